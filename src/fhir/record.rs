//! The patient record as the EHR sent it: the views of its resources per prefetch key, plus
//! what could not be read.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::prefetch::{self, FailureKind, PrefetchValue, SkippedResource};
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

    /// What a clinician would call this part of the record.
    pub fn description(self) -> &'static str {
        match self {
            DataKey::Patient => "demographics",
            DataKey::QuestionnaireResponses => "intake questionnaire responses",
            DataKey::Conditions => "conditions (problem list)",
            DataKey::Observations => "observations (temperature, D-dimer)",
            DataKey::Medications => "medication orders",
            DataKey::ServiceRequests => "orders (service requests)",
            DataKey::Procedures => "procedures",
        }
    }
}

/// Why a key could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    Absent,
    Failed(FailureKind),
}

/// Where a key's data came from, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOrigin {
    /// Sent by the EHR in `prefetch`.
    Prefetch,
    /// Read from `fhirServer` by the service.
    Fetched,
    /// Neither sent nor fetched.
    Absent,
    /// The EHR's read failed (an OperationOutcome) or the value could not be read.
    Failed,
}

impl DataOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            DataOrigin::Prefetch => "prefetch",
            DataOrigin::Fetched => "fetched",
            DataOrigin::Absent => "absent",
            DataOrigin::Failed => "failed",
        }
    }
}

/// What could not be read, by key. Ids only, never content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataGaps {
    pub unavailable: Vec<(DataKey, Unavailable)>,
    pub skipped: Vec<(DataKey, SkippedResource)>,
    /// Keys whose Bundle says more pages exist that were not read.
    pub more_pages: Vec<DataKey>,
}

impl DataGaps {
    pub fn is_empty(&self) -> bool {
        self.unavailable.is_empty() && self.skipped.is_empty() && self.more_pages.is_empty()
    }

    pub fn is_unavailable(&self, key: DataKey) -> bool {
        self.unavailable.iter().any(|(k, _)| *k == key)
    }
}

/// The record of one patient, read from the prefetch.
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
    pub gaps: DataGaps,
}

impl PatientRecord {
    /// Reads every key of the contract from a prefetch object. Never fails: what cannot be read
    /// is listed in `gaps`, and the caller decides whether a required key is missing.
    #[tracing::instrument(name = "parse prefetch", skip_all)]
    pub fn from_prefetch(prefetch: &HashMap<String, Box<RawValue>>) -> PatientRecord {
        let mut record = PatientRecord::default();
        for key in DataKey::ALL {
            let raw = prefetch.get(key.prefetch_key()).map(|v| &**v);
            match key {
                DataKey::Patient => {
                    record.patient =
                        record.take(*key, prefetch::read::<Patient>(raw, key.resource_type())).into_iter().next();
                }
                DataKey::QuestionnaireResponses => {
                    record.questionnaire_responses = record.take(*key, prefetch::read(raw, key.resource_type()));
                }
                DataKey::Conditions => record.conditions = record.take(*key, prefetch::read(raw, key.resource_type())),
                DataKey::Observations => {
                    record.observations = record.take(*key, prefetch::read(raw, key.resource_type()));
                }
                DataKey::Medications => {
                    let value = prefetch::read::<MedicationRequest>(raw, key.resource_type());
                    if let PrefetchValue::Read(read) = &value {
                        record.medications = read
                            .others
                            .iter()
                            .filter(|raw| prefetch::resource_type_of(raw).as_deref() == Some("Medication"))
                            .filter_map(|raw| serde_json::from_str::<Medication>(raw.get()).ok())
                            .collect();
                    }
                    record.medication_requests = record.take(*key, value);
                }
                DataKey::ServiceRequests => {
                    record.service_requests = record.take(*key, prefetch::read(raw, key.resource_type()));
                }
                DataKey::Procedures => record.procedures = record.take(*key, prefetch::read(raw, key.resource_type())),
            }
        }
        record
    }

    fn take<T>(&mut self, key: DataKey, value: PrefetchValue<T>) -> Vec<T> {
        match value {
            PrefetchValue::Absent => {
                self.gaps.unavailable.push((key, Unavailable::Absent));
                Vec::new()
            }
            PrefetchValue::Failed(kind) => {
                self.gaps.unavailable.push((key, Unavailable::Failed(kind)));
                Vec::new()
            }
            PrefetchValue::Read(read) => {
                self.gaps.skipped.extend(read.skipped.into_iter().map(|s| (key, s)));
                if read.next_page {
                    self.gaps.more_pages.push(key);
                }
                read.resources
            }
        }
    }

    /// Where each key of the contract came from.
    pub fn origins(&self) -> Vec<(DataKey, DataOrigin)> {
        DataKey::ALL
            .iter()
            .map(|key| {
                let origin = match self.gaps.unavailable.iter().find(|(k, _)| k == key) {
                    Some((_, Unavailable::Absent)) => DataOrigin::Absent,
                    Some((_, Unavailable::Failed(_))) => DataOrigin::Failed,
                    None => DataOrigin::Prefetch,
                };
                (*key, origin)
            })
            .collect()
    }

    /// The first required key that could not be had, if any.
    pub fn missing_required(&self) -> Option<DataKey> {
        if self.patient.is_none() {
            return Some(DataKey::Patient);
        }
        self.gaps.unavailable.iter().map(|(key, _)| *key).find(|key| key.required())
    }
}
