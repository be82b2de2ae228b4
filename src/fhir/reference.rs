//! Helpers over FHIR references and codeable concepts.

use super::views::{CodeableConcept, Reference};
use crate::knee::question::Side;
use crate::terminology::Terminology;

/// The id of the Patient a reference points to (`Patient/123`, an absolute URL ending in
/// `Patient/123`, with or without `/_history/n`), or `None` for anything else.
pub fn patient_id(reference: &Reference) -> Option<&str> {
    let text = reference.reference.as_deref()?;
    let text = text.split("/_history/").next().unwrap_or(text);
    let mut parts = text.rsplit('/');
    let id = parts.next()?;
    (parts.next() == Some("Patient") && !id.is_empty()).then_some(id)
}

/// Whether a resource whose subject is `subject` may belong to `patient_id`: yes unless it names
/// another Patient.
pub fn belongs_to(subject: Option<&Reference>, patient_id: &str) -> bool {
    subject.and_then(self::patient_id).is_none_or(|id| id == patient_id)
}

/// Every (system, code) pair of a concept.
pub fn codings(concept: &CodeableConcept) -> impl Iterator<Item = (&str, &str)> {
    concept.coding.iter().filter_map(|c| Some((c.system.as_deref()?, c.code.as_deref()?)))
}

/// A short human description of a concept: its text, else its first display, else its first code;
/// empty when it has none (the card then says so in its own words).
pub fn describe(concept: &CodeableConcept) -> String {
    if let Some(text) = concept.text.as_deref() {
        return text.to_owned();
    }
    let first = concept.coding.first();
    first.and_then(|c| c.display.clone().or_else(|| c.code.clone())).unwrap_or_default()
}

/// The side a ServiceRequest's `bodySite` names with a laterality qualifier (left, right, both).
pub fn laterality(body_site: &[CodeableConcept], terminology: &Terminology) -> Option<Side> {
    body_site.iter().find_map(|site| {
        [Side::Left, Side::Right, Side::Both].into_iter().find(|side| {
            let laterality = terminology.laterality(*side);
            codings(site).any(|(system, code)| system == laterality.system && code == laterality.code)
        })
    })
}

/// The first coding code of a concept, for status-like concepts (clinicalStatus...).
pub fn first_code(concept: Option<&CodeableConcept>) -> Option<&str> {
    concept?.coding.iter().find_map(|c| c.code.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn reference(text: &str) -> Reference {
        serde_json::from_value(serde_json::json!({ "reference": text })).expect("a valid Reference")
    }

    #[test]
    fn patient_ids_are_read_from_relative_absolute_and_versioned_references() {
        assert_eq!(patient_id(&reference("Patient/p1")), Some("p1"));
        assert_eq!(patient_id(&reference("https://ehr.example/fhir/Patient/p1/_history/3")), Some("p1"));
        assert_eq!(patient_id(&reference("Group/g1")), None);
    }

    #[test]
    fn a_resource_about_another_patient_does_not_belong() {
        assert!(belongs_to(Some(&reference("Patient/p1")), "p1"));
        assert!(!belongs_to(Some(&reference("Patient/p2")), "p1"));
        assert!(belongs_to(None, "p1"));
    }
}
