//! The scopes the intake app asks for: the narrowest that work. It reads, in the patient's
//! compartment, exactly the resource types the patient-view service reads to evaluate (its
//! prefetch templates, with what they `_include`): the service reads them for the app, with the
//! app's token, to prefill the form and to give the cards. It creates QuestionnaireResponses and
//! reads none (the one it wrote is sent to the service). `openid fhirUser` tell a clinician from a
//! patient (the Wells group is for clinicians); `launch` (EHR launch) or `launch/patient`
//! (standalone) give the patient. SMART v2 syntax (`patient/Condition.rs`), and v1
//! (`patient/Condition.read`) for EHRs that do not advertise `permission-v2`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::fhir::record::DataKey;

/// The scope strings the app chooses from, by launch and by syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scopes {
    pub ehr: ScopeSyntaxes,
    pub standalone: ScopeSyntaxes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeSyntaxes {
    pub v2: String,
    pub v1: String,
}

/// What the app may do with one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Access {
    read: bool,
    search: bool,
    create: bool,
}

impl Access {
    fn v2(self) -> String {
        [(self.create, 'c'), (self.read, 'r'), (self.search, 's')]
            .iter()
            .filter(|(granted, _)| *granted)
            .map(|(_, letter)| *letter)
            .collect()
    }

    fn v1(self) -> &'static str {
        if self.create { "write" } else { "read" }
    }
}

/// The resource types a template's `_include=Source:param` brings in, where the parameter names
/// its target type (`MedicationRequest:medication` -> `Medication`).
fn included_types(template: &str) -> Vec<String> {
    template
        .split(['?', '&'])
        .filter_map(|parameter| parameter.strip_prefix("_include="))
        .filter_map(|include| include.split(':').nth(1))
        .map(|target| {
            let mut letters = target.chars();
            letters.next().map(|first| first.to_uppercase().chain(letters).collect()).unwrap_or_default()
        })
        .collect()
}

impl Scopes {
    /// The scopes for a service's prefetch templates (key -> query).
    pub fn for_templates(templates: &HashMap<String, String>) -> Scopes {
        let mut access: BTreeMap<String, Access> = BTreeMap::new();
        let none = Access { read: false, search: false, create: false };
        for key in DataKey::ALL.iter().copied().filter(|key| *key != DataKey::QuestionnaireResponses) {
            let Some(template) = templates.get(key.prefetch_key()) else { continue };
            let entry = access.entry(key.resource_type().to_owned()).or_insert(none);
            entry.read = true;
            entry.search |= key.is_search();
            for included in included_types(template) {
                access.entry(included).or_insert(none).read = true;
            }
        }
        access.insert(DataKey::QuestionnaireResponses.resource_type().to_owned(), Access { create: true, ..none });
        let resources = |v2: bool| -> Vec<String> {
            access
                .iter()
                .map(|(resource, access)| {
                    let rights = if v2 { access.v2() } else { access.v1().to_owned() };
                    format!("patient/{resource}.{rights}")
                })
                .collect()
        };
        let with = |launch: &str, v2: bool| {
            [launch.to_owned(), "openid".to_owned(), "fhirUser".to_owned()]
                .into_iter()
                .chain(resources(v2))
                .collect::<Vec<_>>()
                .join(" ")
        };
        Scopes {
            ehr: ScopeSyntaxes { v2: with("launch", true), v1: with("launch", false) },
            standalone: ScopeSyntaxes { v2: with("launch/patient", true), v1: with("launch/patient", false) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Catalogue, ServiceKind};

    fn shipped() -> Scopes {
        let catalogue = Catalogue::embedded().expect("the shipped catalogue");
        Scopes::for_templates(catalogue.templates(ServiceKind::PatientView))
    }

    #[test]
    fn the_app_reads_what_the_service_evaluates_and_only_creates_questionnaire_responses() {
        let scopes = shipped();
        assert_eq!(
            scopes.ehr.v2,
            "launch openid fhirUser patient/Condition.rs patient/Medication.r patient/MedicationRequest.rs \
             patient/Observation.rs patient/Patient.r patient/Procedure.rs patient/QuestionnaireResponse.c \
             patient/ServiceRequest.rs"
        );
    }

    #[test]
    fn an_ehr_without_smart_v2_gets_the_same_rights_in_v1_syntax() {
        let scopes = shipped();
        assert!(scopes.ehr.v1.contains("patient/Condition.read"), "{}", scopes.ehr.v1);
        assert!(scopes.ehr.v1.contains("patient/QuestionnaireResponse.write"), "{}", scopes.ehr.v1);
        assert!(!scopes.ehr.v1.contains("QuestionnaireResponse.read"), "{}", scopes.ehr.v1);
    }

    #[test]
    fn the_discovery_entry_tells_ehrs_the_scopes_the_app_asks_for() {
        let services: serde_json::Value =
            serde_json::from_str(include_str!("../../cds-hooks/services.json")).expect("services.json");
        let usage = services["services"][0]["usageRequirements"].as_str().expect("usageRequirements");
        let resources = shipped().ehr.v2.trim_start_matches("launch openid fhirUser ").to_owned();
        assert!(usage.contains(&format!("scopes launch openid fhirUser {resources}")), "{usage}");
        assert!(usage.contains("/intake/launch") && usage.contains("PKCE S256"), "{usage}");
    }

    #[test]
    fn a_standalone_launch_asks_the_ehr_to_pick_the_patient() {
        let scopes = shipped();
        assert!(scopes.standalone.v2.starts_with("launch/patient openid fhirUser "), "{}", scopes.standalone.v2);
        assert!(!scopes.standalone.v2.split(' ').any(|scope| scope == "launch"));
    }
}
