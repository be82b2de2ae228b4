//! What the service reads of each incoming FHIR resource: serde views of only the elements the
//! rules use. Every other element is skipped without being built (a tolerant reader: an
//! unexpected extension or a long narrative costs a scan, never an allocation or a rejection).
//!
//! Why not fhir-sdk's complete types here: building every element of every resource was about
//! two thirds of the time of a hook call with a real record (see `bench/README.md`). fhir-sdk
//! still does what it is best at: its `DateTime` and `Date` read FHIR's partial dates below, and
//! its complete types build every resource we send (the suggested orders of `cards::orders`).
//!
//! A view is still strict about what it reads: an element of the wrong JSON type, or a missing
//! element FHIR requires (1..1) and the rules depend on, makes the resource unreadable, and it is
//! skipped and reported like any malformed resource.

use fhir_sdk::{Date, DateTime};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Coding {
    pub system: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CodeableConcept {
    #[serde(default)]
    pub coding: Vec<Coding>,
    pub text: Option<String>,
}

impl CodeableConcept {
    /// A concept that is only words (what a Reference's `display` gives).
    pub fn text(text: &str) -> CodeableConcept {
        CodeableConcept { coding: Vec::new(), text: Some(text.to_owned()) }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reference {
    pub reference: Option<String>,
    pub display: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Quantity {
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Period {
    pub start: Option<DateTime>,
    pub end: Option<DateTime>,
}

impl Period {
    /// The period as one dateTime, for when a thing happened: its end, else its start.
    pub fn end_or_start(&self) -> Option<&DateTime> {
        self.end.as_ref().or(self.start.as_ref())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub id: Option<String>,
    pub birth_date: Option<Date>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub id: Option<String>,
    pub clinical_status: Option<CodeableConcept>,
    pub verification_status: Option<CodeableConcept>,
    pub code: Option<CodeableConcept>,
    #[serde(default)]
    pub body_site: Vec<CodeableConcept>,
    pub subject: Reference,
    pub onset_date_time: Option<DateTime>,
    pub onset_period: Option<Period>,
    pub recorded_date: Option<DateTime>,
    // abatement[x]: only whether one is there matters (an abated condition is not active).
    abatement_date_time: Option<IgnoredAny>,
    abatement_age: Option<IgnoredAny>,
    abatement_period: Option<IgnoredAny>,
    abatement_range: Option<IgnoredAny>,
    abatement_string: Option<IgnoredAny>,
}

impl Condition {
    /// Whether `abatement[x]` says the condition has abated (resolved, in remission).
    pub fn abated(&self) -> bool {
        self.abatement_date_time.is_some()
            || self.abatement_age.is_some()
            || self.abatement_period.is_some()
            || self.abatement_range.is_some()
            || self.abatement_string.is_some()
    }

    /// `onset[x]` as one dateTime when it is a date (a dateTime, or a period's start).
    pub fn onset(&self) -> Option<&DateTime> {
        self.onset_date_time.as_ref().or_else(|| self.onset_period.as_ref().and_then(|p| p.start.as_ref()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub id: Option<String>,
    pub status: String,
    pub code: CodeableConcept,
    pub subject: Option<Reference>,
    pub effective_date_time: Option<DateTime>,
    pub effective_instant: Option<DateTime>,
    pub effective_period: Option<Period>,
    pub value_quantity: Option<Quantity>,
}

impl Observation {
    /// `effective[x]` as one dateTime: a period's end (else start); a Timing is not a time.
    pub fn effective(&self) -> Option<&DateTime> {
        self.effective_date_time
            .as_ref()
            .or(self.effective_instant.as_ref())
            .or_else(|| self.effective_period.as_ref().and_then(Period::end_or_start))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicationRequest {
    pub id: Option<String>,
    pub status: String,
    /// `proposal`, `plan`, `order`, ... (FHIR 1..1): only an ordering intent is treatment.
    pub intent: String,
    pub subject: Reference,
    pub authored_on: Option<DateTime>,
    pub medication_codeable_concept: Option<CodeableConcept>,
    pub medication_reference: Option<Reference>,
    #[serde(default)]
    pub reason_code: Vec<CodeableConcept>,
    /// Contained resources, kept raw: only a contained Medication is ever read.
    #[serde(default)]
    pub contained: Vec<Box<RawValue>>,
}

impl MedicationRequest {
    /// The contained Medication with this local id (`#id` without the `#`).
    pub fn contained_medication(&self, local_id: &str) -> Option<Medication> {
        self.contained
            .iter()
            .filter_map(|raw| serde_json::from_str::<ContainedMedication>(raw.get()).ok())
            .find(|m| m.resource_type == "Medication" && m.id.as_deref() == Some(local_id))
            .map(|m| Medication { id: m.id, code: m.code })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Medication {
    pub id: Option<String>,
    pub code: Option<CodeableConcept>,
}

/// A contained resource read as a Medication; other resource types fail or are told apart.
#[derive(Deserialize)]
struct ContainedMedication {
    #[serde(rename = "resourceType")]
    resource_type: String,
    id: Option<String>,
    code: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    pub id: Option<String>,
    pub status: String,
    pub subject: Reference,
    pub code: Option<CodeableConcept>,
    #[serde(default)]
    pub body_site: Vec<CodeableConcept>,
    #[serde(default)]
    pub reason_code: Vec<CodeableConcept>,
    pub authored_on: Option<DateTime>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Procedure {
    pub id: Option<String>,
    pub status: String,
    pub subject: Reference,
    pub code: Option<CodeableConcept>,
    pub performed_date_time: Option<DateTime>,
    pub performed_period: Option<Period>,
}

impl Procedure {
    /// `performed[x]` as one dateTime: a period's end (else start).
    pub fn performed(&self) -> Option<&DateTime> {
        self.performed_date_time.as_ref().or_else(|| self.performed_period.as_ref().and_then(Period::end_or_start))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionnaireResponse {
    pub id: Option<String>,
    pub questionnaire: Option<String>,
    pub status: String,
    pub subject: Option<Reference>,
    pub authored: Option<DateTime>,
    #[serde(default)]
    pub item: Vec<QuestionnaireResponseItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionnaireResponseItem {
    pub link_id: String,
    #[serde(default)]
    pub answer: Vec<Answer>,
    #[serde(default)]
    pub item: Vec<QuestionnaireResponseItem>,
}

/// An answer: the three value types the contract uses, and whether another one was sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    value_boolean: Option<bool>,
    value_integer: Option<i64>,
    value_coding: Option<Coding>,
    // The other value[x] types of R4: read only to know an answer of another type was given.
    value_decimal: Option<IgnoredAny>,
    value_date: Option<IgnoredAny>,
    value_date_time: Option<IgnoredAny>,
    value_time: Option<IgnoredAny>,
    value_string: Option<IgnoredAny>,
    value_uri: Option<IgnoredAny>,
    value_attachment: Option<IgnoredAny>,
    value_quantity: Option<IgnoredAny>,
    value_reference: Option<IgnoredAny>,
    #[serde(default)]
    pub item: Vec<QuestionnaireResponseItem>,
}

/// The value of an answer, as far as the contract's questions care.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnswerValue<'a> {
    Boolean(bool),
    Integer(i64),
    Coding(&'a Coding),
    /// A value of a type no question of the contract uses.
    OtherType,
}

impl Answer {
    pub fn value(&self) -> Option<AnswerValue<'_>> {
        if let Some(value) = self.value_boolean {
            return Some(AnswerValue::Boolean(value));
        }
        if let Some(value) = self.value_integer {
            return Some(AnswerValue::Integer(value));
        }
        if let Some(coding) = &self.value_coding {
            return Some(AnswerValue::Coding(coding));
        }
        let other = [
            &self.value_decimal,
            &self.value_date,
            &self.value_date_time,
            &self.value_time,
            &self.value_string,
            &self.value_uri,
            &self.value_attachment,
            &self.value_quantity,
            &self.value_reference,
        ];
        other.iter().any(|value| value.is_some()).then_some(AnswerValue::OtherType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_the_rules_do_not_read_are_skipped_whatever_their_shape() {
        let condition: Condition = serde_json::from_value(json!({
            "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p"},
            "text": {"status": "generated", "div": "<div>long narrative</div>"},
            "note": "not an Annotation array", "extension": [{"url": "x", "valueWhatever": [1, 2]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "128053003"}]}
        }))
        .expect("a Condition whose unread elements are odd is still read");
        assert_eq!(condition.code.expect("code").coding[0].code.as_deref(), Some("128053003"));
    }

    #[test]
    fn an_element_the_rules_read_of_the_wrong_type_makes_the_resource_unreadable() {
        let result = serde_json::from_value::<Condition>(json!({
            "resourceType": "Condition", "subject": {"reference": "Patient/p"}, "code": "malignant"
        }));
        assert!(result.is_err());
    }

    #[test]
    fn a_required_element_the_rules_depend_on_must_be_present() {
        let result = serde_json::from_value::<Observation>(json!({
            "resourceType": "Observation", "code": {"text": "D-dimer"}
        }));
        assert!(result.is_err(), "an Observation without status is not read");
    }

    #[test]
    fn any_abatement_makes_a_condition_abated_and_onset_reads_a_period_start() {
        let base = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"}});
        let read = |extra: serde_json::Value| {
            let mut value = base.clone();
            value.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            serde_json::from_value::<Condition>(value).expect("a Condition")
        };
        assert!(!read(json!({})).abated());
        for abatement in [
            json!({"abatementDateTime": "2024-01-02"}),
            json!({"abatementAge": {"value": 50}}),
            json!({"abatementPeriod": {"start": "2024"}}),
            json!({"abatementRange": {"low": {"value": 1}}}),
            json!({"abatementString": "in remission"}),
        ] {
            assert!(read(abatement.clone()).abated(), "{abatement}");
        }
        let onset = read(json!({"onsetPeriod": {"start": "2024-05-01"}}));
        assert!(onset.onset().is_some());
    }

    #[test]
    fn a_medication_request_without_intent_is_unreadable() {
        let result = serde_json::from_value::<MedicationRequest>(json!({
            "resourceType": "MedicationRequest", "status": "active", "subject": {"reference": "Patient/p"}
        }));
        assert!(result.is_err(), "intent is 1..1 and decides whether it is treatment");
    }

    #[test]
    fn an_answer_of_a_type_no_question_uses_is_told_apart_from_no_answer() {
        let answer: Answer = serde_json::from_value(json!({"valueString": "yes"})).expect("valid answer");
        assert_eq!(answer.value(), Some(AnswerValue::OtherType));
        let empty: Answer = serde_json::from_value(json!({"item": []})).expect("valid answer");
        assert_eq!(empty.value(), None);
    }

    #[test]
    fn a_contained_medication_is_found_by_its_local_id() {
        let request: MedicationRequest = serde_json::from_value(json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/p"},
            "medicationReference": {"reference": "#m1"},
            "contained": [
                {"resourceType": "Organization", "id": "m1", "code": "not a concept"},
                {"resourceType": "Medication", "id": "m1", "code": {"text": "apixaban"}}
            ]
        }))
        .expect("valid MedicationRequest");
        let medication = request.contained_medication("m1").expect("found");
        assert_eq!(medication.code.and_then(|c| c.text).as_deref(), Some("apixaban"));
    }
}
