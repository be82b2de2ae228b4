//! Keeps the views honest. For speed the service reads FHIR resources through its own serde views
//! of only the elements its rules use (`popliteal::fhir::views`, read by `page::read_entry`), not
//! through fhir-sdk's complete types. Here every resource of the official HL7 R4 examples and of
//! the Synthea records (every Bundle entry, and every contained resource) of a type the rules read
//! is read both ways, and every element the rules use must give the same value both ways. A
//! resource only one side can read is a difference too, except that one the view skips for a
//! `modifierExtension` must be one fhir-sdk shows a `modifierExtension` on.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fhir_sdk::DateTime;
use fhir_sdk::r4b::resources as sdk;
use fhir_sdk::r4b::types as sdk_types;
use popliteal::fhir::page::{Entry, SkipReason, read_entry};
use popliteal::fhir::views;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

// ---------------------------------------------------------------------------------------------
// One side's reading of a resource: every element the rules use, as (element, value) text.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Reading(Vec<(String, String)>);

/// A CodeableConcept as the rules see it: its codings (system, code, display) and its text.
struct Concept<'a> {
    coding: Vec<[Option<&'a str>; 3]>,
    text: Option<&'a str>,
}

/// A Reference as the rules see it: (reference, display).
type Ref<'a> = (Option<&'a str>, Option<&'a str>);

/// An answer's value as the rules see it (`views::AnswerValue`), as text: `Boolean(true)`,
/// `Integer(3)`, `Coding(system, code)` or `OtherType`.
fn answer_coding(system: Option<&str>, code: Option<&str>) -> String {
    format!("Coding({system:?}, {code:?})")
}

impl Reading {
    fn put(&mut self, element: impl Into<String>, value: impl Debug) {
        self.0.push((element.into(), format!("{value:?}")));
    }

    fn concept(&mut self, element: &str, concept: Option<Concept<'_>>) {
        self.put(format!("{element} (present)"), concept.is_some());
        if let Some(concept) = concept {
            for (index, [system, code, display]) in concept.coding.iter().enumerate() {
                self.put(format!("{element}.coding[{index}].system"), system);
                self.put(format!("{element}.coding[{index}].code"), code);
                self.put(format!("{element}.coding[{index}].display"), display);
            }
            self.put(format!("{element}.text"), concept.text);
        }
    }

    fn concepts<'a>(&mut self, element: &str, concepts: impl Iterator<Item = Concept<'a>>) {
        for (index, concept) in concepts.enumerate() {
            self.concept(&format!("{element}[{index}]"), Some(concept));
        }
    }

    fn reference(&mut self, element: &str, reference: Option<Ref<'_>>) {
        self.put(format!("{element} (present)"), reference.is_some());
        if let Some((reference, display)) = reference {
            self.put(format!("{element}.reference"), reference);
            self.put(format!("{element}.display"), display);
        }
    }

    /// A date or dateTime as its FHIR string (so the offset counts, not only the instant).
    fn when(&mut self, element: &str, value: Option<&DateTime>) {
        self.put(element, value.map(fhir_string));
    }
}

fn fhir_string<T: Serialize + Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => format!("{value:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The views' readings.
// ---------------------------------------------------------------------------------------------

fn view_concept(concept: &views::CodeableConcept) -> Concept<'_> {
    Concept {
        coding: concept.coding.iter().map(|c| [c.system.as_deref(), c.code.as_deref(), c.display.as_deref()]).collect(),
        text: concept.text.as_deref(),
    }
}

fn view_reference(reference: &views::Reference) -> Ref<'_> {
    (reference.reference.as_deref(), reference.display.as_deref())
}

fn view_patient(patient: &views::Patient) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", patient.id.as_deref());
    reading.put("birthDate", patient.birth_date.as_ref().map(fhir_string));
    reading
}

fn view_condition(condition: &views::Condition) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", condition.id.as_deref());
    reading.concept("clinicalStatus", condition.clinical_status.as_ref().map(view_concept));
    reading.concept("verificationStatus", condition.verification_status.as_ref().map(view_concept));
    reading.concept("code", condition.code.as_ref().map(view_concept));
    reading.concepts("bodySite", condition.body_site.iter().map(view_concept));
    reading.reference("subject", Some(view_reference(&condition.subject)));
    reading.when("onsetDateTime", condition.onset_date_time.as_ref());
    reading.put("onsetPeriod (present)", condition.onset_period.is_some());
    reading.when("onsetPeriod.start", condition.onset_period.as_ref().and_then(|p| p.start.as_ref()));
    reading.when("recordedDate", condition.recorded_date.as_ref());
    reading.put("abated()", condition.abated());
    reading.when("onset()", condition.onset());
    reading
}

fn view_observation(observation: &views::Observation) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", observation.id.as_deref());
    reading.put("status", observation.status.as_str());
    reading.concept("code", Some(view_concept(&observation.code)));
    reading.reference("subject", observation.subject.as_ref().map(view_reference));
    reading.when("effective()", observation.effective());
    let quantity = observation.value_quantity.as_ref();
    reading.put("valueQuantity (present)", quantity.is_some());
    reading.put("valueQuantity.value", quantity.and_then(|q| q.value));
    reading.put("valueQuantity.unit", quantity.and_then(|q| q.unit.as_deref()));
    reading.put("valueQuantity.code", quantity.and_then(|q| q.code.as_deref()));
    reading
}

fn view_medication_request(request: &views::MedicationRequest) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", request.id.as_deref());
    reading.put("status", request.status.as_str());
    reading.put("intent", request.intent.as_str());
    reading.reference("subject", Some(view_reference(&request.subject)));
    reading.when("authoredOn", request.authored_on.as_ref());
    reading.concept("medicationCodeableConcept", request.medication_codeable_concept.as_ref().map(view_concept));
    reading.reference("medicationReference", request.medication_reference.as_ref().map(view_reference));
    reading.concepts("reasonCode", request.reason_code.iter().map(view_concept));
    let local = request.medication_reference.as_ref().and_then(|r| r.reference.as_deref()?.strip_prefix('#'));
    if let Some(local) = local {
        let medication = request.contained_medication(local);
        let element = format!("contained_medication({local:?})");
        reading.put(format!("{element} (found)"), medication.is_some());
        reading.put(format!("{element}.id"), medication.as_ref().and_then(|m| m.id.clone()));
        reading
            .concept(&format!("{element}.code"), medication.as_ref().and_then(|m| m.code.as_ref()).map(view_concept));
    }
    reading
}

fn view_medication(medication: &views::Medication) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", medication.id.as_deref());
    reading.concept("code", medication.code.as_ref().map(view_concept));
    reading
}

fn view_service_request(request: &views::ServiceRequest) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", request.id.as_deref());
    reading.put("status", request.status.as_str());
    reading.reference("subject", Some(view_reference(&request.subject)));
    reading.concept("code", request.code.as_ref().map(view_concept));
    reading.concepts("bodySite", request.body_site.iter().map(view_concept));
    reading.concepts("reasonCode", request.reason_code.iter().map(view_concept));
    reading.when("authoredOn", request.authored_on.as_ref());
    reading
}

fn view_procedure(procedure: &views::Procedure) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", procedure.id.as_deref());
    reading.put("status", procedure.status.as_str());
    reading.reference("subject", Some(view_reference(&procedure.subject)));
    reading.concept("code", procedure.code.as_ref().map(view_concept));
    reading.when("performed()", procedure.performed());
    reading
}

fn view_questionnaire_response(response: &views::QuestionnaireResponse) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", response.id.as_deref());
    reading.put("questionnaire", response.questionnaire.as_deref());
    reading.put("status", response.status.as_str());
    reading.reference("subject", response.subject.as_ref().map(view_reference));
    reading.when("authored", response.authored.as_ref());
    view_items(&mut reading, "", &response.item);
    reading
}

fn view_items(reading: &mut Reading, prefix: &str, items: &[views::QuestionnaireResponseItem]) {
    for (index, item) in items.iter().enumerate() {
        let at = format!("{prefix}item[{index}]");
        reading.put(format!("{at}.linkId"), item.link_id.as_str());
        for (index, answer) in item.answer.iter().enumerate() {
            let at = format!("{at}.answer[{index}]");
            let value = answer.value().map(|value| match value {
                views::AnswerValue::Boolean(value) => format!("Boolean({value})"),
                views::AnswerValue::Integer(value) => format!("Integer({value})"),
                views::AnswerValue::Coding(coding) => answer_coding(coding.system.as_deref(), coding.code.as_deref()),
                views::AnswerValue::OtherType => "OtherType".to_owned(),
            });
            reading.put(format!("{at}.value()"), value);
            view_items(reading, &format!("{at}."), &answer.item);
        }
        view_items(reading, &format!("{at}."), &item.item);
    }
}

// ---------------------------------------------------------------------------------------------
// fhir-sdk's readings of the same elements, from its complete types.
// ---------------------------------------------------------------------------------------------

fn sdk_concept(concept: &sdk_types::CodeableConcept) -> Concept<'_> {
    Concept {
        coding: concept
            .coding
            .iter()
            .map(|c| match c {
                Some(c) => [c.system.as_deref(), c.code.as_deref(), c.display.as_deref()],
                None => [Some("(null coding)"); 3],
            })
            .collect(),
        text: concept.text.as_deref(),
    }
}

/// A `null` in an array (FHIR allows one only beside a `_element` array of extensions).
fn null_concept<'a>() -> Concept<'a> {
    Concept { coding: Vec::new(), text: Some("(null in the array)") }
}

fn sdk_concepts(concepts: &[Option<sdk_types::CodeableConcept>]) -> impl Iterator<Item = Concept<'_>> {
    concepts.iter().map(|c| c.as_ref().map_or_else(null_concept, sdk_concept))
}

fn sdk_reference(reference: &sdk_types::Reference) -> Ref<'_> {
    (reference.reference.as_deref(), reference.display.as_deref())
}

/// A period as one dateTime, for when a thing happened: its end, else its start.
fn sdk_end_or_start(period: &sdk_types::Period) -> Option<&DateTime> {
    period.end.as_ref().or(period.start.as_ref())
}

fn sdk_patient(patient: &sdk::Patient) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", patient.id.as_deref());
    reading.put("birthDate", patient.birth_date.as_ref().map(fhir_string));
    reading
}

fn sdk_condition(condition: &sdk::Condition) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", condition.id.as_deref());
    reading.concept("clinicalStatus", condition.clinical_status.as_ref().map(sdk_concept));
    reading.concept("verificationStatus", condition.verification_status.as_ref().map(sdk_concept));
    reading.concept("code", condition.code.as_ref().map(sdk_concept));
    reading.concepts("bodySite", sdk_concepts(&condition.body_site));
    reading.reference("subject", Some(sdk_reference(&condition.subject)));
    let onset_date_time = match &condition.onset {
        Some(sdk::ConditionOnset::DateTime(value)) => Some(value),
        _ => None,
    };
    let onset_period = match &condition.onset {
        Some(sdk::ConditionOnset::Period(period)) => Some(period),
        _ => None,
    };
    let onset_period_start = onset_period.and_then(|p| p.start.as_ref());
    reading.when("onsetDateTime", onset_date_time);
    reading.put("onsetPeriod (present)", onset_period.is_some());
    reading.when("onsetPeriod.start", onset_period_start);
    reading.when("recordedDate", condition.recorded_date.as_ref());
    reading.put("abated()", condition.abatement.is_some());
    reading.when("onset()", onset_date_time.or(onset_period_start));
    reading
}

fn sdk_observation(observation: &sdk::Observation) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", observation.id.as_deref());
    reading.put("status", AsRef::<str>::as_ref(&observation.status));
    reading.concept("code", Some(sdk_concept(&observation.code)));
    reading.reference("subject", observation.subject.as_ref().map(sdk_reference));
    let effective = match &observation.effective {
        Some(sdk::ObservationEffective::DateTime(value)) => Some(value.clone()),
        Some(sdk::ObservationEffective::Instant(instant)) => Some(DateTime::DateTime(instant.clone())),
        Some(sdk::ObservationEffective::Period(period)) => sdk_end_or_start(period).cloned(),
        Some(sdk::ObservationEffective::Timing(_)) | None => None,
    };
    reading.when("effective()", effective.as_ref());
    let quantity = match &observation.value {
        Some(sdk::ObservationValue::Quantity(quantity)) => Some(quantity),
        _ => None,
    };
    reading.put("valueQuantity (present)", quantity.is_some());
    reading.put("valueQuantity.value", quantity.and_then(|q| q.value));
    reading.put("valueQuantity.unit", quantity.and_then(|q| q.unit.as_deref()));
    reading.put("valueQuantity.code", quantity.and_then(|q| q.code.as_deref()));
    reading
}

fn sdk_medication_request(request: &sdk::MedicationRequest) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", request.id.as_deref());
    reading.put("status", request.status.as_str());
    reading.put("intent", request.intent.as_str());
    reading.reference("subject", Some(sdk_reference(&request.subject)));
    reading.when("authoredOn", request.authored_on.as_ref());
    let (concept, reference) = match &request.medication {
        sdk::MedicationRequestMedication::CodeableConcept(concept) => (Some(concept), None),
        sdk::MedicationRequestMedication::Reference(reference) => (None, Some(reference)),
    };
    reading.concept("medicationCodeableConcept", concept.map(sdk_concept));
    reading.reference("medicationReference", reference.map(sdk_reference));
    reading.concepts("reasonCode", sdk_concepts(&request.reason_code));
    let local = reference.and_then(|r| r.reference.as_deref()?.strip_prefix('#'));
    if let Some(local) = local {
        let medication = request.contained.iter().find_map(|resource| match resource {
            sdk::Resource::Medication(medication) if medication.id.as_deref() == Some(local) => Some(medication),
            _ => None,
        });
        let element = format!("contained_medication({local:?})");
        reading.put(format!("{element} (found)"), medication.is_some());
        reading.put(format!("{element}.id"), medication.and_then(|m| m.id.clone()));
        reading.concept(&format!("{element}.code"), medication.and_then(|m| m.code.as_ref()).map(sdk_concept));
    }
    reading
}

fn sdk_medication(medication: &sdk::Medication) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", medication.id.as_deref());
    reading.concept("code", medication.code.as_ref().map(sdk_concept));
    reading
}

fn sdk_service_request(request: &sdk::ServiceRequest) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", request.id.as_deref());
    reading.put("status", AsRef::<str>::as_ref(&request.status));
    reading.reference("subject", Some(sdk_reference(&request.subject)));
    reading.concept("code", request.code.as_ref().map(sdk_concept));
    reading.concepts("bodySite", sdk_concepts(&request.body_site));
    reading.concepts("reasonCode", sdk_concepts(&request.reason_code));
    reading.when("authoredOn", request.authored_on.as_ref());
    reading
}

fn sdk_procedure(procedure: &sdk::Procedure) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", procedure.id.as_deref());
    reading.put("status", AsRef::<str>::as_ref(&procedure.status));
    reading.reference("subject", Some(sdk_reference(&procedure.subject)));
    reading.concept("code", procedure.code.as_ref().map(sdk_concept));
    let performed = match &procedure.performed {
        Some(sdk::ProcedurePerformed::DateTime(value)) => Some(value),
        Some(sdk::ProcedurePerformed::Period(period)) => sdk_end_or_start(period),
        Some(
            sdk::ProcedurePerformed::String(_) | sdk::ProcedurePerformed::Age(_) | sdk::ProcedurePerformed::Range(_),
        )
        | None => None,
    };
    reading.when("performed()", performed);
    reading
}

fn sdk_questionnaire_response(response: &sdk::QuestionnaireResponse) -> Reading {
    let mut reading = Reading::default();
    reading.put("id", response.id.as_deref());
    reading.put("questionnaire", response.questionnaire.as_deref());
    reading.put("status", AsRef::<str>::as_ref(&response.status));
    reading.reference("subject", response.subject.as_ref().map(sdk_reference));
    reading.when("authored", response.authored.as_ref());
    sdk_items(&mut reading, "", &response.item);
    reading
}

fn sdk_items(reading: &mut Reading, prefix: &str, items: &[Option<sdk::QuestionnaireResponseItem>]) {
    for (index, item) in items.iter().enumerate() {
        let at = format!("{prefix}item[{index}]");
        let Some(item) = item else {
            reading.put(format!("{at}.linkId"), "(null item)");
            continue;
        };
        reading.put(format!("{at}.linkId"), item.link_id.as_str());
        for (index, answer) in item.answer.iter().enumerate() {
            let at = format!("{at}.answer[{index}]");
            let Some(answer) = answer else {
                reading.put(format!("{at}.value()"), "(null answer)");
                continue;
            };
            use sdk::QuestionnaireResponseItemAnswerValue as V;
            let value = answer.value.as_ref().map(|value| match value {
                V::Boolean(value) => format!("Boolean({value})"),
                V::Integer(value) => format!("Integer({})", i64::from(*value)),
                V::Coding(coding) => answer_coding(coding.system.as_deref(), coding.code.as_deref()),
                V::Decimal(_)
                | V::Date(_)
                | V::DateTime(_)
                | V::Time(_)
                | V::String(_)
                | V::Uri(_)
                | V::Attachment(_)
                | V::Quantity(_)
                | V::Reference(_) => "OtherType".to_owned(),
            });
            reading.put(format!("{at}.value()"), value);
            sdk_items(reading, &format!("{at}."), &answer.item);
        }
        sdk_items(reading, &format!("{at}."), &item.item);
    }
}

// ---------------------------------------------------------------------------------------------
// Reading one resource both ways and comparing.
// ---------------------------------------------------------------------------------------------

/// What one run compared, and every difference it found.
#[derive(Debug, Default)]
struct Run {
    /// Per resource type: (read and compared, of which contained, skipped for a modifierExtension).
    counts: BTreeMap<&'static str, [usize; 3]>,
    /// Elements compared, and of those the ones with a value (not absent, not false).
    elements: usize,
    elements_with_a_value: usize,
    problems: Vec<String>,
}

impl Run {
    fn merge(&mut self, other: Run) {
        for (resource_type, counts) in other.counts {
            let mine = self.counts.entry(resource_type).or_default();
            for (mine, theirs) in mine.iter_mut().zip(counts) {
                *mine += theirs;
            }
        }
        self.elements += other.elements;
        self.elements_with_a_value += other.elements_with_a_value;
        self.problems.extend(other.problems);
    }

    fn compared(&self, resource_type: &str) -> usize {
        self.counts.get(resource_type).map_or(0, |counts| counts[0])
    }

    fn summary(&self) -> String {
        let mut lines: Vec<String> = self
            .counts
            .iter()
            .map(|(resource_type, [read, contained, modifier])| {
                format!("  {resource_type}: {read} compared ({contained} contained), {modifier} skipped for a modifierExtension")
            })
            .collect();
        lines.push(format!("  elements compared: {} ({} with a value)", self.elements, self.elements_with_a_value));
        lines.join("\n")
    }
}

/// Where a resource is: for messages.
struct Place<'a> {
    label: &'a str,
    resource_type: &'static str,
    id: String,
    position: usize,
    contained: bool,
}

impl Place<'_> {
    fn name(&self) -> String {
        format!("{}: {}/{}", self.label, self.resource_type, self.id)
    }
}

/// Every element whose value differs between the two readings (or is read by one side only).
fn differences(place: &str, view: &Reading, sdk: &Reading) -> Vec<String> {
    let sdk_values: HashMap<&str, &str> = sdk.0.iter().map(|(e, v)| (e.as_str(), v.as_str())).collect();
    let view_values: HashMap<&str, &str> = view.0.iter().map(|(e, v)| (e.as_str(), v.as_str())).collect();
    let mut found = Vec::new();
    for (element, value) in &view.0 {
        match sdk_values.get(element.as_str()) {
            Some(sdk_value) if sdk_value == value => {}
            Some(sdk_value) => found.push(format!("{place}: {element}: view {value} vs fhir-sdk {sdk_value}")),
            None => found.push(format!("{place}: {element}: view {value} vs fhir-sdk (no such element)")),
        }
    }
    for (element, value) in &sdk.0 {
        if !view_values.contains_key(element.as_str()) {
            found.push(format!("{place}: {element}: view (no such element) vs fhir-sdk {value}"));
        }
    }
    found
}

/// Whether fhir-sdk's reading carries a `modifierExtension` anywhere (serialised back: it writes
/// one only when it is not empty).
fn sdk_shows_a_modifier_extension<S: Serialize>(resource: &S) -> bool {
    fn walk(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(members) => {
                members.iter().any(|(name, member)| name == "modifierExtension" || walk(member))
            }
            serde_json::Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    serde_json::to_value(resource).is_ok_and(|value| walk(&value))
}

fn short(error: &serde_json::Error) -> String {
    error.to_string().chars().take(300).collect()
}

/// Reads `view_raw` through the view (`read_entry`) and `sdk_raw` through fhir-sdk: the same
/// resource, except in the self-checks, which hand two different ones.
fn compare_as<V: DeserializeOwned, S: DeserializeOwned + Serialize>(
    view_raw: &RawValue,
    sdk_raw: &RawValue,
    place: &Place<'_>,
    view_reading: fn(&V) -> Reading,
    sdk_reading: fn(&S) -> Reading,
    run: &mut Run,
) {
    let name = place.name();
    let view = read_entry::<V>(view_raw, place.resource_type, place.position);
    let sdk = serde_json::from_str::<S>(sdk_raw.get());
    let view_error = || serde_json::from_str::<V>(view_raw.get()).err().map(|e| short(&e)).unwrap_or_default();
    let counts = run.counts.entry(place.resource_type).or_default();
    match (view, sdk) {
        (Entry::Read(view), Ok(sdk)) => {
            counts[0] += 1;
            counts[1] += usize::from(place.contained);
            let (view, sdk) = (view_reading(&view), sdk_reading(&sdk));
            run.elements += view.0.len();
            run.elements_with_a_value += view.0.iter().filter(|(_, v)| v != "None" && v != "false").count();
            run.problems.extend(differences(&name, &view, &sdk));
        }
        (Entry::Read(_), Err(error)) => {
            run.problems.push(format!("{name}: the view reads it, fhir-sdk cannot: {}", short(&error)));
        }
        (Entry::Skipped(skipped), Ok(sdk)) if skipped.reason == SkipReason::ModifierExtension => {
            if sdk_shows_a_modifier_extension(&sdk) {
                counts[2] += 1;
            } else {
                run.problems.push(format!(
                    "{name}: the view skips it for a modifierExtension, but fhir-sdk's reading has none"
                ));
            }
        }
        (Entry::Skipped(_), Ok(_)) => {
            run.problems.push(format!("{name}: fhir-sdk reads it, the view cannot: {}", view_error()));
        }
        (Entry::Skipped(skipped), Err(error)) => run.problems.push(format!(
            "{name}: neither reads it (view: {:?} {}; fhir-sdk: {})",
            skipped.reason,
            view_error(),
            short(&error)
        )),
        (Entry::Other(other), _) => {
            run.problems.push(format!("{name}: read_entry took it for a resource of another type: {other}"));
        }
        (Entry::Outcome, _) => run.problems.push(format!("{name}: read_entry took it for an OperationOutcome")),
    }
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Contained<'a> {
    #[serde(default, borrow)]
    contained: Vec<&'a RawValue>,
}

/// Compares one resource (and its contained resources) if it is of a type the rules read.
fn compare_resource(
    view_raw: &RawValue,
    sdk_raw: &RawValue,
    label: &str,
    position: usize,
    contained: bool,
    run: &mut Run,
) {
    let head = match serde_json::from_str::<Head>(view_raw.get()) {
        Ok(head) => head,
        Err(error) => {
            run.problems.push(format!("{label}: not a resource: {}", short(&error)));
            return;
        }
    };
    let id = match &head.id {
        Some(serde_json::Value::String(id)) => id.clone(),
        Some(other) => other.to_string(),
        None => "(no id)".to_owned(),
    };
    let resource_type = head.resource_type.as_deref().unwrap_or_default();
    let place = |resource_type| Place { label, resource_type, id: id.clone(), position, contained };
    match resource_type {
        "Patient" => compare_as(view_raw, sdk_raw, &place("Patient"), view_patient, sdk_patient, run),
        "Condition" => compare_as(view_raw, sdk_raw, &place("Condition"), view_condition, sdk_condition, run),
        "Observation" => compare_as(view_raw, sdk_raw, &place("Observation"), view_observation, sdk_observation, run),
        "MedicationRequest" => compare_as(
            view_raw,
            sdk_raw,
            &place("MedicationRequest"),
            view_medication_request,
            sdk_medication_request,
            run,
        ),
        "Medication" => compare_as(view_raw, sdk_raw, &place("Medication"), view_medication, sdk_medication, run),
        "ServiceRequest" => {
            compare_as(view_raw, sdk_raw, &place("ServiceRequest"), view_service_request, sdk_service_request, run)
        }
        "Procedure" => compare_as(view_raw, sdk_raw, &place("Procedure"), view_procedure, sdk_procedure, run),
        "QuestionnaireResponse" => compare_as(
            view_raw,
            sdk_raw,
            &place("QuestionnaireResponse"),
            view_questionnaire_response,
            sdk_questionnaire_response,
            run,
        ),
        _ => return,
    }
    if contained {
        return;
    }
    match serde_json::from_str::<Contained<'_>>(view_raw.get()) {
        Ok(inner) => {
            for (index, resource) in inner.contained.iter().enumerate() {
                compare_resource(resource, resource, &format!("{label} contained[{index}]"), position, true, run);
            }
        }
        Err(error) => run.problems.push(format!("{label}: its contained resources are unreadable: {}", short(&error))),
    }
}

#[derive(Deserialize)]
struct Bundle<'a> {
    #[serde(default, borrow)]
    entry: Vec<BundleEntry<'a>>,
}

#[derive(Deserialize)]
struct BundleEntry<'a> {
    #[serde(default, borrow)]
    resource: Option<&'a RawValue>,
}

fn data_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-data")
}

/// Compares every resource of one file: a resource, or a Bundle (every entry's resource).
fn compare_file(path: &Path) -> Run {
    let mut run = Run::default();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{} is readable: {e}", path.display()));
    let label = path.strip_prefix(data_directory()).unwrap_or(path).display().to_string();
    let head: Head = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label} is a FHIR resource: {e}"));
    if head.resource_type.as_deref() == Some("Bundle") {
        let bundle: Bundle<'_> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label} is a Bundle: {e}"));
        for (position, entry) in bundle.entry.iter().enumerate() {
            let label = format!("{label} entry {position}");
            match entry.resource {
                Some(resource) => compare_resource(resource, resource, &label, position, false, &mut run),
                None => run.problems.push(format!("{label}: an entry without a resource")),
            }
        }
    } else {
        let resource: &RawValue = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label} is JSON: {e}"));
        compare_resource(resource, resource, &label, 0, false, &mut run);
    }
    run
}

/// The `*.json` files of a folder of the shared FHIR data, sorted.
fn json_files(folder: &str) -> Vec<PathBuf> {
    let directory = data_directory().join(folder);
    let entries = std::fs::read_dir(&directory).unwrap_or_else(|e| panic!("{} is readable: {e}", directory.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Compares every file, on as many threads as there are cores; the findings in file order.
fn compare_files(files: &[PathBuf]) -> Run {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(files.len()).max(1);
    let mut runs: Vec<(usize, Run)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    files
                        .iter()
                        .enumerate()
                        .skip(worker)
                        .step_by(threads)
                        .map(|(index, path)| (index, compare_file(path)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a comparing thread finishes")).collect()
    });
    runs.sort_by_key(|(index, _)| *index);
    let mut total = Run::default();
    for (_, run) in runs {
        total.merge(run);
    }
    total
}

/// Fails with every difference and every count below its minimum; prints the counts.
fn assert_same_and_enough(what: &str, run: &Run, minimums: &[(&str, usize)], started: Instant) {
    println!("{what}, in {:.1?}:\n{}", started.elapsed(), run.summary());
    let mut failures = Vec::new();
    if !run.problems.is_empty() {
        failures.push(format!(
            "{} differences between the views and fhir-sdk:\n{}",
            run.problems.len(),
            run.problems.join("\n")
        ));
    }
    for (resource_type, minimum) in minimums {
        let compared = run.compared(resource_type);
        if compared < *minimum {
            failures.push(format!("only {compared} {resource_type} resources compared, expected at least {minimum}"));
        }
    }
    assert!(failures.is_empty(), "{what}:\n{}\ncounts:\n{}", failures.join("\n"), run.summary());
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_official_r4_example_reads_the_same_through_the_views_as_through_fhir_sdk() {
    let started = Instant::now();
    let files = json_files("r4-examples");
    assert!(files.len() >= 50, "expected the official R4 examples, found {} files", files.len());
    let run = compare_files(&files);
    assert_same_and_enough(
        "the official HL7 R4 examples",
        &run,
        &[
            ("Patient", 2),
            ("Condition", 13),
            ("Observation", 1),
            ("MedicationRequest", 1),
            ("Medication", 1),
            ("ServiceRequest", 21),
            ("Procedure", 1),
            ("QuestionnaireResponse", 5),
        ],
        started,
    );
    assert!(run.elements_with_a_value >= 900, "too few elements with a value compared:\n{}", run.summary());
}

#[test]
fn every_synthea_resource_reads_the_same_through_the_views_as_through_fhir_sdk() {
    let started = Instant::now();
    let mut files = json_files("synthea");
    files.extend(json_files("synthea/population"));
    assert!(files.len() >= 32, "expected the 3 + 29 Synthea records, found {} files", files.len());
    let run = compare_files(&files);
    assert_same_and_enough(
        "the Synthea records",
        &run,
        &[("Patient", 32), ("Condition", 240), ("Observation", 4_500), ("MedicationRequest", 340), ("Procedure", 480)],
        started,
    );
    assert!(run.elements_with_a_value >= 50_000, "too few elements with a value compared:\n{}", run.summary());
}

// The self-checks: the comparison itself can fail, and says precisely where.

fn raw(value: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("valid JSON")
}

fn condition(extra: serde_json::Value) -> Box<RawValue> {
    let mut value = serde_json::json!({
        "resourceType": "Condition", "id": "dvt",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "128053003", "display": "Deep venous thrombosis"}]},
        "subject": {"reference": "Patient/p1"}
    });
    value.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
    raw(value)
}

fn compare_one(view_raw: &RawValue, sdk_raw: &RawValue) -> Run {
    let mut run = Run::default();
    compare_resource(view_raw, sdk_raw, "self-check.json", 0, false, &mut run);
    run
}

#[test]
fn a_resource_read_differently_is_reported_element_by_element_with_both_values() {
    let view = condition(serde_json::json!({"onsetDateTime": "2024-05-01"}));
    let same = compare_one(&view, &view);
    assert!(same.problems.is_empty(), "a resource read twice is the same: {:#?}", same.problems);
    assert_eq!(same.compared("Condition"), 1);

    let sdk = condition(serde_json::json!({
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "444325005"}]},
        "subject": {"reference": "Patient/p2"},
        "onsetPeriod": {"start": "2024-04"},
        "abatementString": "resolved",
        "bodySite": [{"text": "left knee"}]
    }));
    let problems = compare_one(&view, &sdk).problems;
    let expected = [
        r#"self-check.json: Condition/dvt: code.coding[0].code: view Some("128053003") vs fhir-sdk Some("444325005")"#,
        r#"self-check.json: Condition/dvt: code.coding[0].display: view Some("Deep venous thrombosis") vs fhir-sdk None"#,
        r#"self-check.json: Condition/dvt: subject.reference: view Some("Patient/p1") vs fhir-sdk Some("Patient/p2")"#,
        r#"self-check.json: Condition/dvt: onsetDateTime: view Some("2024-05-01") vs fhir-sdk None"#,
        r#"self-check.json: Condition/dvt: onsetPeriod (present): view false vs fhir-sdk true"#,
        r#"self-check.json: Condition/dvt: onsetPeriod.start: view None vs fhir-sdk Some("2024-04")"#,
        r#"self-check.json: Condition/dvt: abated(): view false vs fhir-sdk true"#,
        r#"self-check.json: Condition/dvt: onset(): view Some("2024-05-01") vs fhir-sdk Some("2024-04")"#,
        r#"self-check.json: Condition/dvt: bodySite[0] (present): view (no such element) vs fhir-sdk true"#,
        r#"self-check.json: Condition/dvt: bodySite[0].text: view (no such element) vs fhir-sdk Some("left knee")"#,
    ];
    assert_eq!(problems, expected, "every difference, and only those, in reading order");
}

#[test]
fn a_resource_only_one_side_can_read_is_reported() {
    // fhir-sdk knows the status codes; the view keeps any string.
    let observation = raw(serde_json::json!({
        "resourceType": "Observation", "id": "o1", "status": "not-a-status", "code": {"text": "D-dimer"}
    }));
    let problems = compare_one(&observation, &observation).problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("self-check.json: Observation/o1: the view reads it, fhir-sdk cannot: "),
        "{problems:#?}"
    );

    // A null in bodySite: fhir-sdk reads it as an absent element, the view refuses it.
    let condition = condition(serde_json::json!({"bodySite": [null]}));
    let problems = compare_one(&condition, &condition).problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("self-check.json: Condition/dvt: fhir-sdk reads it, the view cannot: "),
        "{problems:#?}"
    );
}

#[test]
fn a_resource_skipped_for_a_modifier_extension_must_show_one_in_fhir_sdk() {
    let modifier = serde_json::json!([{"url": "https://ehr.example.org/not-this-patient", "valueBoolean": true}]);
    // On a backbone element: fhir-sdk shows it too, so the skip is right.
    let shown = condition(serde_json::json!({"stage": [{"modifierExtension": modifier}]}));
    let run = compare_one(&shown, &shown);
    assert!(run.problems.is_empty(), "{:#?}", run.problems);
    assert_eq!(run.counts.get("Condition"), Some(&[0, 0, 1]), "counted as skipped for a modifierExtension");

    // Inside an element fhir-sdk does not know: it reads no modifierExtension, and that is reported.
    let hidden = condition(serde_json::json!({"unknownElement": {"modifierExtension": modifier}}));
    let problems = compare_one(&hidden, &hidden).problems;
    assert_eq!(
        problems,
        ["self-check.json: Condition/dvt: the view skips it for a modifierExtension, but fhir-sdk's reading has none"]
    );
}
