//! The patient record: the views of the resources of each prefetch key, and one provenance per
//! key saying where its data came from (sent, fetched, absent, failed, partial). Built by
//! `assembly` from the prefetch first, then the FHIR server, page by page, straight into views.

use serde_json::value::RawValue;

use super::page::{self, BundlePage, Entry, SkipReason, SkippedResource, Value};
use super::views::{
    Condition, Medication, MedicationRequest, Observation, Patient, Procedure, QuestionnaireResponse, ServiceRequest,
};
use crate::knee::facts::RecordSource;

/// The prefetch keys of the contract (fixed names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataKey {
    Patient,
    QuestionnaireResponses,
    Conditions,
    Observations,
    Medications,
    ServiceRequests,
    Procedures,
}

impl DataKey {
    pub const ALL: &'static [DataKey] = &[
        DataKey::Patient,
        DataKey::QuestionnaireResponses,
        DataKey::Conditions,
        DataKey::Observations,
        DataKey::Medications,
        DataKey::ServiceRequests,
        DataKey::Procedures,
    ];

    pub fn prefetch_key(self) -> &'static str {
        match self {
            DataKey::Patient => "patient",
            DataKey::QuestionnaireResponses => "questionnaireResponses",
            DataKey::Conditions => "conditions",
            DataKey::Observations => "observations",
            DataKey::Medications => "medications",
            DataKey::ServiceRequests => "serviceRequests",
            DataKey::Procedures => "procedures",
        }
    }

    pub fn resource_type(self) -> &'static str {
        match self {
            DataKey::Patient => "Patient",
            DataKey::QuestionnaireResponses => "QuestionnaireResponse",
            DataKey::Conditions => "Condition",
            DataKey::Observations => "Observation",
            DataKey::Medications => "MedicationRequest",
            DataKey::ServiceRequests => "ServiceRequest",
            DataKey::Procedures => "Procedure",
        }
    }

    /// Without these the service cannot answer (412).
    pub fn required(self) -> bool {
        matches!(self, DataKey::Patient | DataKey::QuestionnaireResponses)
    }

    /// Whether the key is read with a search (a Bundle) rather than a read of one resource.
    pub fn is_search(self) -> bool {
        self != DataKey::Patient
    }

    pub fn record_source(self) -> Option<RecordSource> {
        match self {
            DataKey::Conditions => Some(RecordSource::Conditions),
            DataKey::Observations => Some(RecordSource::Observations),
            DataKey::Medications => Some(RecordSource::Medications),
            DataKey::ServiceRequests => Some(RecordSource::ServiceRequests),
            DataKey::Procedures => Some(RecordSource::Procedures),
            DataKey::Patient | DataKey::QuestionnaireResponses => None,
        }
    }
}

/// Why a key's data could not be had (in full). For logs, metrics and the audit trail: a closed
/// set of codes; the card says which data, not why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The EHR sent an OperationOutcome: its own read failed.
    OperationOutcome,
    /// The value is not a FHIR resource.
    NotAResource,
    /// No `fhirServer` to read it from.
    NoServer,
    /// `fhirServer`, or a `next` link, is not an allowed origin.
    OriginNotAllowed,
    /// The FHIR server answered with this HTTP status.
    Status(u16),
    /// The fetch budget ran out.
    Timeout,
    Network,
    /// The server's answer is not the FHIR expected.
    NotFhir,
    /// An answer larger than `fhir.max_response_bytes`.
    TooLarge,
    /// More pages than `fhir.page_cap`.
    PageCap,
    /// More bytes in all than `fhir.max_bytes_per_call`.
    CallByteCap,
    /// The process's budget of bytes in flight (`fhir.max_bytes_in_flight`) had none to spare
    /// before the deadline.
    ByteBudget,
    /// `fhirServer` is (or resolves to) an address that is not public, in production.
    AddressNotPublic,
    /// A URL carries a user name or password (`https://user:pass@host/`): never followed.
    CredentialsInUrl,
}

impl Cause {
    /// For metrics, spans and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::OperationOutcome => "operation-outcome",
            Cause::NotAResource => "not-a-resource",
            Cause::NoServer => "no-server",
            Cause::OriginNotAllowed => "origin-not-allowed",
            Cause::Status(400..=499) => "status-4xx",
            Cause::Status(500..=599) => "status-5xx",
            Cause::Status(_) => "status-other",
            Cause::Timeout => "timeout",
            Cause::Network => "network",
            Cause::NotFhir => "not-fhir",
            Cause::TooLarge => "too-large",
            Cause::PageCap => "page-cap",
            Cause::CallByteCap => "call-byte-cap",
            Cause::ByteBudget => "byte-budget",
            Cause::AddressNotPublic => "address-not-public",
            Cause::CredentialsInUrl => "credentials-in-url",
        }
    }
}

/// Where one key's data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Sent by the EHR in `prefetch` (later pages, if any, read from `fhirServer`): complete.
    Sent,
    /// Read from `fhirServer` by the service: complete.
    Fetched,
    /// Not sent, and there is no `fhirServer` to read it from.
    Absent,
    /// Nothing could be read: the EHR's read failed, or the fetch did.
    Failed(Cause),
    /// Some pages were read, a later one could not be: what was read is used, the rest is unknown.
    Partial(Cause),
}

impl Provenance {
    /// Whether all of the key's data was read.
    pub fn is_complete(self) -> bool {
        matches!(self, Provenance::Sent | Provenance::Fetched)
    }

    /// Whether nothing of the key could be read.
    pub fn is_missing(self) -> bool {
        matches!(self, Provenance::Absent | Provenance::Failed(_))
    }

    /// For the audit trail: `sent`, `fetched`, `absent`, `failed:<cause>`, `partial:<cause>`.
    pub fn code(self) -> String {
        match self {
            Provenance::Sent => "sent".into(),
            Provenance::Fetched => "fetched".into(),
            Provenance::Absent => "absent".into(),
            Provenance::Failed(cause) => format!("failed:{}", cause.as_str()),
            Provenance::Partial(cause) => format!("partial:{}", cause.as_str()),
        }
    }
}

/// The resources of one key, read so far.
#[derive(Debug)]
pub enum Resources {
    Patient(Vec<Patient>),
    QuestionnaireResponses(Vec<QuestionnaireResponse>),
    Conditions(Vec<Condition>),
    Observations(Vec<Observation>),
    /// MedicationRequests, and the Medications `_include`d beside them.
    Medications(Vec<MedicationRequest>, Vec<Medication>),
    ServiceRequests(Vec<ServiceRequest>),
    Procedures(Vec<Procedure>),
}

fn push<T>(into: &mut Vec<T>, entry: Entry<T>, skipped: &mut Vec<SkippedResource>) -> Option<String> {
    match entry {
        Entry::Read(resource) => into.push(resource),
        Entry::Skipped(resource) => skipped.push(resource),
        Entry::Outcome => {}
        Entry::Other(resource_type) => return Some(resource_type),
    }
    None
}

impl Resources {
    pub fn for_key(key: DataKey) -> Resources {
        match key {
            DataKey::Patient => Resources::Patient(Vec::new()),
            DataKey::QuestionnaireResponses => Resources::QuestionnaireResponses(Vec::new()),
            DataKey::Conditions => Resources::Conditions(Vec::new()),
            DataKey::Observations => Resources::Observations(Vec::new()),
            DataKey::Medications => Resources::Medications(Vec::new(), Vec::new()),
            DataKey::ServiceRequests => Resources::ServiceRequests(Vec::new()),
            DataKey::Procedures => Resources::Procedures(Vec::new()),
        }
    }

    /// Reads one resource into its view. Resources of other types are ignored (an `_include`d
    /// Medication is kept beside the MedicationRequests).
    fn add(&mut self, raw: &RawValue, position: usize, skipped: &mut Vec<SkippedResource>) {
        let other = match self {
            Resources::Patient(into) => push(into, page::read_entry(raw, "Patient", position), skipped),
            Resources::QuestionnaireResponses(into) => {
                push(into, page::read_entry(raw, "QuestionnaireResponse", position), skipped)
            }
            Resources::Conditions(into) => push(into, page::read_entry(raw, "Condition", position), skipped),
            Resources::Observations(into) => push(into, page::read_entry(raw, "Observation", position), skipped),
            Resources::Medications(into, _) => {
                push(into, page::read_entry(raw, "MedicationRequest", position), skipped)
            }
            Resources::ServiceRequests(into) => push(into, page::read_entry(raw, "ServiceRequest", position), skipped),
            Resources::Procedures(into) => push(into, page::read_entry(raw, "Procedure", position), skipped),
        };
        if let (Some("Medication"), Resources::Medications(_, medications)) = (other.as_deref(), self) {
            // An included Medication only resolves a reference; an unreadable one resolves none.
            if let Entry::Read(medication) = page::read_entry::<Medication>(raw, "Medication", position) {
                medications.push(medication);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Resources::Patient(v) => v.len(),
            Resources::QuestionnaireResponses(v) => v.len(),
            Resources::Conditions(v) => v.len(),
            Resources::Observations(v) => v.len(),
            Resources::Medications(v, _) => v.len(),
            Resources::ServiceRequests(v) => v.len(),
            Resources::Procedures(v) => v.len(),
        }
    }
}

/// One key's data as it is being read: the resources, what was skipped, and where the reading
/// stands.
#[derive(Debug)]
pub struct KeyData {
    pub key: DataKey,
    pub resources: Resources,
    pub skipped: Vec<SkippedResource>,
    /// Entries read so far across pages (positions continue from page to page).
    entries_seen: usize,
}

/// What one value (a prefetch value or a fetched page) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOutcome {
    /// Read; `next` is the link to the following page, when there is one.
    Read { next: Option<String> },
    /// Not usable: an OperationOutcome, or not a resource.
    Failed(Cause),
}

impl KeyData {
    pub fn new(key: DataKey) -> KeyData {
        KeyData { key, resources: Resources::for_key(key), skipped: Vec::new(), entries_seen: 0 }
    }

    /// Reads one value into the views: the resources of a Bundle page, or one resource.
    pub fn read_value(&mut self, raw: &RawValue) -> PageOutcome {
        match page::classify(raw) {
            Value::Nothing => PageOutcome::Read { next: None },
            Value::Failed(cause) => PageOutcome::Failed(cause),
            Value::Resource(resource) => {
                let position = self.entries_seen;
                self.entries_seen += 1;
                self.resources.add(resource, position, &mut self.skipped);
                PageOutcome::Read { next: None }
            }
            Value::Bundle(page) => self.read_page(page),
        }
    }

    fn read_page(&mut self, page: BundlePage<'_>) -> PageOutcome {
        let offset = self.entries_seen;
        for (position, resource) in &page.resources {
            self.resources.add(resource, offset + position, &mut self.skipped);
        }
        for position in &page.bad_entries {
            self.skipped.push(SkippedResource {
                resource_type: "entry".into(),
                id: None,
                position: offset + position,
                reason: SkipReason::Unreadable,
            });
        }
        self.entries_seen += page.entry_count;
        PageOutcome::Read { next: page.next }
    }

    /// How many resources of the key's type were read.
    pub fn read_count(&self) -> usize {
        self.resources.len()
    }
}

/// The record of one patient, as read.
#[derive(Debug, Default)]
pub struct PatientRecord {
    pub patient: Option<Patient>,
    pub questionnaire_responses: Vec<QuestionnaireResponse>,
    pub conditions: Vec<Condition>,
    pub observations: Vec<Observation>,
    pub medication_requests: Vec<MedicationRequest>,
    /// Medications `_include`d beside the MedicationRequests (to resolve medicationReference).
    pub medications: Vec<Medication>,
    pub service_requests: Vec<ServiceRequest>,
    pub procedures: Vec<Procedure>,
    /// Where each key's data came from, in the order of [`DataKey::ALL`].
    pub provenance: Vec<(DataKey, Provenance)>,
    /// Resources that were skipped, by key. Ids only, never content.
    pub skipped: Vec<(DataKey, SkippedResource)>,
}

impl PatientRecord {
    /// Puts one key's data into the record.
    pub fn insert(&mut self, data: KeyData, provenance: Provenance) {
        let key = data.key;
        match data.resources {
            // A read of one Patient: a second resource is not this patient's read.
            Resources::Patient(patients) => self.patient = patients.into_iter().next(),
            Resources::QuestionnaireResponses(v) => self.questionnaire_responses = v,
            Resources::Conditions(v) => self.conditions = v,
            Resources::Observations(v) => self.observations = v,
            Resources::Medications(requests, medications) => {
                self.medication_requests = requests;
                self.medications = medications;
            }
            Resources::ServiceRequests(v) => self.service_requests = v,
            Resources::Procedures(v) => self.procedures = v,
        }
        self.skipped.extend(data.skipped.into_iter().map(|s| (key, s)));
        self.provenance.retain(|(k, _)| *k != key);
        self.provenance.push((key, provenance));
        self.provenance.sort_by_key(|(k, _)| *k);
    }

    pub fn provenance_of(&self, key: DataKey) -> Provenance {
        self.provenance.iter().find(|(k, _)| *k == key).map_or(Provenance::Absent, |(_, p)| *p)
    }

    /// The first required key that could not be had, if any.
    pub fn missing_required(&self) -> Option<DataKey> {
        if self.patient.is_none() {
            return Some(DataKey::Patient);
        }
        DataKey::ALL.iter().copied().find(|key| key.required() && self.provenance_of(*key).is_missing())
    }

    /// Keys whose data could not be read in full: their findings are "not assessed".
    pub fn incomplete_keys(&self) -> impl Iterator<Item = (DataKey, Provenance)> + '_ {
        self.provenance.iter().copied().filter(|(_, provenance)| !provenance.is_complete())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    #[test]
    fn pages_add_up_and_skipped_positions_continue_from_page_to_page() {
        let mut data = KeyData::new(DataKey::Conditions);
        let first = raw(r#"{"resourceType":"Bundle","link":[{"relation":"next","url":"https://x/2"}],"entry":[
            {"resource":{"resourceType":"Condition","id":"a","subject":{"reference":"Patient/p"}}},
            {"resource":{"resourceType":"Condition","id":"bad","code":1,"subject":{"reference":"Patient/p"}}}]}"#);
        assert_eq!(data.read_value(&first), PageOutcome::Read { next: Some("https://x/2".into()) });
        let second = raw(r#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Condition","id":"b","subject":{"reference":"Patient/p"}}}, 7]}"#);
        assert_eq!(data.read_value(&second), PageOutcome::Read { next: None });
        assert_eq!(data.read_count(), 2);
        let positions: Vec<usize> = data.skipped.iter().map(|s| s.position).collect();
        assert_eq!(positions, vec![1, 3]);
    }

    #[test]
    fn included_medications_are_kept_beside_the_requests() {
        let mut data = KeyData::new(DataKey::Medications);
        let bundle = raw(r#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"MedicationRequest","id":"r","status":"active","intent":"order",
                "subject":{"reference":"Patient/p"},"medicationReference":{"reference":"Medication/m"}}},
            {"resource":{"resourceType":"Medication","id":"m","code":{"text":"warfarin"}},"search":{"mode":"include"}}]}"#);
        data.read_value(&bundle);
        let mut record = PatientRecord::default();
        record.insert(data, Provenance::Sent);
        assert_eq!(record.medication_requests.len(), 1);
        assert_eq!(record.medications.len(), 1);
    }

    #[test]
    fn a_required_key_that_could_not_be_had_is_named_and_a_partial_one_is_not() {
        let mut record = PatientRecord::default();
        let mut patient = KeyData::new(DataKey::Patient);
        patient.read_value(&raw(r#"{"resourceType":"Patient","id":"p"}"#));
        record.insert(patient, Provenance::Sent);
        record.insert(KeyData::new(DataKey::QuestionnaireResponses), Provenance::Partial(Cause::Timeout));
        assert_eq!(record.missing_required(), None);
        record.insert(KeyData::new(DataKey::QuestionnaireResponses), Provenance::Failed(Cause::Status(503)));
        assert_eq!(record.missing_required(), Some(DataKey::QuestionnaireResponses));
        assert_eq!(record.provenance_of(DataKey::QuestionnaireResponses).code(), "failed:status-5xx");
    }
}
