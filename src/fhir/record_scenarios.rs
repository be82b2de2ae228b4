//! Clinical scenarios for reading real records (clinical-logic.md section 5): each test states
//! one row or status rule of the spec and checks it from FHIR resources as an EHR codes them,
//! through the record (`PatientRecord`) and the value sets to the facts the rules read.

use serde_json::{Value, json};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::interpret::record_facts;
use super::page::SkipReason;
use super::record::{DataKey, PatientRecord};
use crate::knee::facts::{DDimerUnit, OrderState, RecordFacts};
use crate::knee::question::Side;
use crate::knee::thresholds::Thresholds;
use crate::terminology::Terminology;

const NOW: OffsetDateTime = datetime!(2026-11-30 10:00 UTC);
const PATIENT: &str = "p1";
const SNOMED: &str = "http://snomed.info/sct";
const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const LOINC: &str = "http://loinc.org";

/// Loaded once for all scenarios: the value sets take a moment to parse in a debug build.
static KNOWLEDGE: std::sync::LazyLock<(Terminology, Thresholds)> = std::sync::LazyLock::new(|| {
    (Terminology::embedded().expect("the code lists load"), Thresholds::embedded().expect("the thresholds load"))
});

fn day(days_ago: i64) -> String {
    (NOW - Duration::days(days_ago)).date().to_string()
}

fn instant(hours_ago: i64) -> String {
    (NOW - Duration::hours(hours_ago)).format(&time::format_description::well_known::Rfc3339).expect("formats")
}

fn bundle(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset",
           "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

/// The facts of a record whose keys hold these resources (the other keys empty).
fn facts_of(key: DataKey, resources: Vec<Value>) -> (RecordFacts, PatientRecord) {
    let mut prefetch = std::collections::HashMap::new();
    prefetch.insert(
        "patient".to_owned(),
        serde_json::value::to_raw_value(&json!({"resourceType": "Patient", "id": PATIENT})).expect("raw"),
    );
    prefetch.insert(key.prefetch_key().to_owned(), serde_json::value::to_raw_value(&bundle(resources)).expect("raw"));
    let record = super::assembly::from_prefetch_alone(&prefetch);
    let (terminology, thresholds) = &*KNOWLEDGE;
    (record_facts(&record, PATIENT, terminology, thresholds, NOW), record)
}

fn conditions(resources: Vec<Value>) -> RecordFacts {
    facts_of(DataKey::Conditions, resources).0
}

fn condition(system: &str, code: &str, extra: Value) -> Value {
    let mut condition = json!({
        "resourceType": "Condition", "id": "c1",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": format!("Patient/{PATIENT}")},
        "recordedDate": day(30)
    });
    condition.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
    condition
}

fn clinical(status: &str) -> Value {
    json!({"clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]}})
}

fn verification(status: &str) -> Value {
    json!({"verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}]}})
}

mod active_cancer {
    use super::*;

    #[test]
    fn a_specific_snomed_cancer_of_the_vsac_cancer_value_set_is_active_cancer() {
        let facts = conditions(vec![condition(SNOMED, "363406005", json!({}))]);
        assert_eq!(facts.active_cancer.len(), 1, "malignant neoplasm of colon, not 363346000");
    }

    #[test]
    fn a_cancer_listed_only_in_all_primary_and_secondary_cancer_counts_too() {
        let facts = conditions(vec![condition(SNOMED, "100721000119109", json!({}))]);
        assert_eq!(facts.active_cancer.len(), 1, "high grade astrocytoma of brain");
    }

    #[test]
    fn an_icd_10_cm_cancer_code_counts_with_or_without_its_dot() {
        for code in ["C18.9", "C189"] {
            assert_eq!(conditions(vec![condition(ICD, code, json!({}))]).active_cancer.len(), 1, "{code}");
        }
    }

    #[test]
    fn a_cancer_without_a_clinical_status_counts_as_active() {
        let mut cancer = condition(SNOMED, "363406005", json!({}));
        cancer.as_object_mut().expect("object").remove("clinicalStatus");
        assert_eq!(conditions(vec![cancer]).active_cancer.len(), 1);
    }

    #[test]
    fn a_recurrence_or_relapse_counts_and_a_resolved_inactive_or_remitted_cancer_does_not() {
        for (status, counts) in
            [("recurrence", true), ("relapse", true), ("resolved", false), ("inactive", false), ("remission", false)]
        {
            let facts = conditions(vec![condition(SNOMED, "363406005", clinical(status))]);
            assert_eq!(facts.active_cancer.len(), usize::from(counts), "{status}");
        }
    }

    #[test]
    fn a_cancer_with_an_abatement_does_not_count_even_when_marked_active() {
        for abatement in [json!({"abatementDateTime": day(200)}), json!({"abatementString": "in remission"})] {
            let facts = conditions(vec![condition(SNOMED, "363406005", abatement.clone())]);
            assert!(facts.active_cancer.is_empty(), "{abatement}");
        }
    }

    #[test]
    fn a_refuted_or_entered_in_error_cancer_never_counts() {
        for status in ["refuted", "entered-in-error"] {
            assert!(conditions(vec![condition(SNOMED, "363406005", verification(status))]).active_cancer.is_empty());
        }
    }

    #[test]
    fn a_cancer_about_another_patient_does_not_count() {
        let other = condition(SNOMED, "363406005", json!({"subject": {"reference": "Patient/someone-else"}}));
        assert!(conditions(vec![other]).active_cancer.is_empty());
    }
}

mod previous_dvt {
    use super::*;

    #[test]
    fn a_resolved_dvt_of_the_leg_counts_as_previously_documented() {
        let facts = conditions(vec![condition(SNOMED, "404223003", clinical("resolved"))]);
        assert_eq!(facts.previous_dvt.len(), 1, "history counts, whatever the clinical status");
    }

    #[test]
    fn a_popliteal_vein_dvt_and_the_personal_history_codes_count() {
        for (system, code) in [(SNOMED, "132251000119101"), (ICD, "I82.431"), (ICD, "Z86.718"), (ICD, "Z86.71")] {
            assert_eq!(conditions(vec![condition(system, code, json!({}))]).previous_dvt.len(), 1, "{code}");
        }
    }

    #[test]
    fn a_pulmonary_embolism_or_a_vena_cava_thrombosis_is_not_a_previous_leg_dvt() {
        for (system, code) in [(SNOMED, "59282003"), (ICD, "I26.99"), (ICD, "I82.220")] {
            assert!(conditions(vec![condition(system, code, json!({}))]).previous_dvt.is_empty(), "{code}");
        }
    }

    #[test]
    fn a_refuted_dvt_does_not_count() {
        assert!(conditions(vec![condition(SNOMED, "404223003", verification("refuted"))]).previous_dvt.is_empty());
    }
}

mod major_surgery {
    use super::*;

    fn procedure(code: &str, status: &str, days_ago: i64) -> Value {
        json!({"resourceType": "Procedure", "id": "s1", "status": status,
               "code": {"coding": [{"system": SNOMED, "code": code}]},
               "subject": {"reference": format!("Patient/{PATIENT}")},
               "performedPeriod": {"start": day(days_ago), "end": day(days_ago)}})
    }

    fn surgery(procedures: Vec<Value>) -> usize {
        facts_of(DataKey::Procedures, procedures).0.recent_major_surgery.len()
    }

    #[test]
    fn a_completed_knee_replacement_of_the_vsac_surgery_value_sets_within_84_days_counts() {
        assert_eq!(surgery(vec![procedure("179344006", "completed", 84)]), 1);
    }

    #[test]
    fn the_same_surgery_85_days_ago_does_not_count() {
        assert_eq!(surgery(vec![procedure("179344006", "completed", 85)]), 0);
    }

    #[test]
    fn a_surgery_not_completed_does_not_count() {
        for status in ["in-progress", "not-done", "entered-in-error", "preparation"] {
            assert_eq!(surgery(vec![procedure("179344006", status, 3)]), 0, "{status}");
        }
    }

    #[test]
    fn a_procedure_outside_the_surgery_value_sets_does_not_count() {
        assert_eq!(surgery(vec![procedure("241504009", "completed", 3)]), 0, "a knee ultrasound is not surgery");
    }
}

mod pregnancy {
    use super::*;

    #[test]
    fn an_active_normal_pregnancy_with_a_recent_onset_counts() {
        let facts = conditions(vec![condition(SNOMED, "72892002", json!({"onsetDateTime": day(90)}))]);
        assert_eq!(facts.pregnancy.len(), 1);
    }

    #[test]
    fn the_icd_10_cm_pregnant_state_code_counts() {
        assert_eq!(conditions(vec![condition(ICD, "Z33.1", json!({}))]).pregnancy.len(), 1);
    }

    #[test]
    fn a_pregnancy_with_an_onset_eleven_months_ago_does_not_count() {
        let old = condition(SNOMED, "72892002", json!({"onsetDateTime": day(335), "recordedDate": day(335)}));
        assert!(conditions(vec![old]).pregnancy.is_empty());
    }

    #[test]
    fn a_resolved_or_abated_pregnancy_does_not_count() {
        let resolved = condition(SNOMED, "72892002", clinical("resolved"));
        let abated = condition(SNOMED, "72892002", json!({"abatementDateTime": day(10)}));
        assert!(conditions(vec![resolved, abated]).pregnancy.is_empty());
    }
}

mod anticoagulants {
    use super::*;

    fn request(status: &str, intent: &str, medication: Value) -> Value {
        let mut request = json!({"resourceType": "MedicationRequest", "id": "m1", "status": status, "intent": intent,
                                 "subject": {"reference": format!("Patient/{PATIENT}")}, "authoredOn": day(20)});
        request.as_object_mut().expect("object").extend(medication.as_object().expect("object").clone());
        request
    }

    fn warfarin_product() -> Value {
        json!({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "855332", "display": "Warfarin Sodium 5 MG Oral Tablet"}]}})
    }

    fn anticoagulated(resources: Vec<Value>) -> usize {
        facts_of(DataKey::Medications, resources).0.anticoagulants.len()
    }

    #[test]
    fn an_active_order_for_a_warfarin_product_code_is_treatment() {
        for intent in ["order", "original-order", "reflex-order", "filler-order", "instance-order"] {
            assert_eq!(anticoagulated(vec![request("active", intent, warfarin_product())]), 1, "{intent}");
        }
    }

    #[test]
    fn a_warfarin_plan_or_proposal_is_not_treatment() {
        for intent in ["plan", "proposal", "option", "directive"] {
            assert_eq!(anticoagulated(vec![request("active", intent, warfarin_product())]), 0, "{intent}");
        }
    }

    #[test]
    fn a_stopped_completed_or_draft_order_is_not_treatment() {
        for status in ["stopped", "completed", "draft", "on-hold", "cancelled", "entered-in-error"] {
            assert_eq!(anticoagulated(vec![request(status, "order", warfarin_product())]), 0, "{status}");
        }
    }

    #[test]
    fn an_anticoagulant_in_a_contained_or_included_medication_or_named_in_text_counts() {
        let contained = request(
            "active",
            "order",
            json!({"medicationReference": {"reference": "#med"},
                   "contained": [{"resourceType": "Medication", "id": "med",
                                  "code": {"coding": [{"system": RXNORM, "code": "1364445"}]}}]}),
        );
        assert_eq!(anticoagulated(vec![contained]), 1, "apixaban 5 mg, contained");
        let included = vec![
            request("active", "order", json!({"medicationReference": {"reference": "Medication/inc"}})),
            json!({"resourceType": "Medication", "id": "inc", "code": {"coding": [{"system": RXNORM, "code": "1114198"}]}}),
        ];
        assert_eq!(anticoagulated(included), 1, "rivaroxaban 10 mg, included");
        let text =
            request("active", "order", json!({"medicationCodeableConcept": {"text": "Enoxaparin 40 mg SC daily"}}));
        assert_eq!(anticoagulated(vec![text]), 1, "an ingredient named in text");
    }

    #[test]
    fn an_antiplatelet_of_the_antithrombotic_value_set_is_not_an_anticoagulant() {
        let clopidogrel = json!({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "309362", "display": "Clopidogrel 75 MG Oral Tablet"}]}});
        assert_eq!(anticoagulated(vec![request("active", "order", clopidogrel)]), 0);
    }
}

mod observations {
    use super::*;

    fn observation(code: &str, status: &str, effective: &str, value: f64, unit: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o1", "status": status,
               "code": {"coding": [{"system": LOINC, "code": code}]},
               "subject": {"reference": format!("Patient/{PATIENT}")},
               "effectiveDateTime": effective,
               "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    }

    fn facts(resources: Vec<Value>) -> RecordFacts {
        facts_of(DataKey::Observations, resources).0
    }

    #[test]
    fn an_oral_temperature_of_the_body_temperature_value_set_of_38_6_this_morning_is_fever() {
        let facts = facts(vec![observation("8331-1", "final", &instant(3), 38.6, "Cel")]);
        assert_eq!(facts.recent_fever.len(), 1);
        assert_eq!(facts.recent_fever[0].value.as_deref(), Some("38.6 °C"));
    }

    #[test]
    fn a_temperature_of_37_9_is_not_fever_and_one_of_101_3_fahrenheit_is() {
        assert!(facts(vec![observation("8310-5", "final", &instant(3), 37.9, "Cel")]).recent_fever.is_empty());
        assert_eq!(facts(vec![observation("8310-5", "final", &instant(3), 101.3, "[degF]")]).recent_fever.len(), 1);
    }

    #[test]
    fn a_temperature_from_three_days_ago_is_not_current_fever() {
        assert!(facts(vec![observation("8310-5", "final", &instant(72), 39.0, "Cel")]).recent_fever.is_empty());
    }

    #[test]
    fn only_final_amended_or_corrected_results_count() {
        for (status, counts) in [
            ("final", true),
            ("amended", true),
            ("corrected", true),
            ("preliminary", false),
            ("registered", false),
            ("cancelled", false),
            ("entered-in-error", false),
        ] {
            let facts = facts(vec![
                observation("8310-5", status, &instant(3), 39.0, "Cel"),
                observation("48065-7", status, &instant(3), 900.0, "ug/L{FEU}"),
            ]);
            assert_eq!(facts.recent_fever.len(), usize::from(counts), "{status}");
            assert_eq!(facts.d_dimers.len(), usize::from(counts), "{status}");
        }
    }

    #[test]
    fn a_d_dimer_counts_for_seven_days_by_its_effective_time_and_keeps_its_unit_family() {
        let facts = facts(vec![
            observation("48065-7", "final", &day(7), 900.0, "ug/L"),
            observation("48066-5", "final", &day(2), 300.0, "ng/mL"),
            observation("48065-7", "final", &day(9), 900.0, "ug/L"),
        ]);
        let units: Vec<DDimerUnit> = facts.d_dimers.iter().map(|d| d.unit).collect();
        assert_eq!(units, vec![DDimerUnit::Feu, DDimerUnit::Ddu]);
    }
}

mod knee_conditions {
    use super::*;

    #[test]
    fn osteoarthritis_of_the_right_knee_supports_the_cyst_pattern_with_its_side() {
        let facts = conditions(vec![condition(ICD, "M17.11", json!({}))]);
        assert_eq!(facts.baker_support.len(), 1);
        assert_eq!(facts.baker_support[0].side, Some(Side::Right));
        assert_eq!(facts.knee_pain.len(), 1, "the M17 family is knee pain on the record too");
    }

    #[test]
    fn a_baker_cyst_and_a_meniscal_tear_support_the_cyst_pattern() {
        for code in ["M71.22", "S83.211A", "M17.0"] {
            assert_eq!(conditions(vec![condition(ICD, code, json!({}))]).baker_support.len(), 1, "{code}");
        }
    }

    #[test]
    fn a_condition_whose_code_names_no_side_takes_the_side_of_its_body_site() {
        let unspecified = condition(
            ICD,
            "M17.10",
            json!({"bodySite": [{"coding": [{"system": SNOMED, "code": "7771000", "display": "Left"}]}]}),
        );
        let facts = conditions(vec![unspecified]);
        assert_eq!(facts.baker_support[0].side, Some(Side::Left));
    }

    #[test]
    fn an_inactive_osteoarthritis_supports_nothing() {
        let facts = conditions(vec![condition(ICD, "M17.11", clinical("inactive"))]);
        assert!(facts.baker_support.is_empty() && facts.knee_pain.is_empty());
    }

    #[test]
    fn knee_pain_on_the_record_is_read_from_its_value_set() {
        for code in ["M25.561", "M25.562", "M25.569", "M71.21"] {
            assert_eq!(conditions(vec![condition(ICD, code, json!({}))]).knee_pain.len(), 1, "{code}");
        }
        assert!(conditions(vec![condition(ICD, "M25.561", clinical("resolved"))]).knee_pain.is_empty());
    }
}

mod modifiers_and_orders {
    use super::*;

    #[test]
    fn a_condition_with_a_modifier_extension_is_skipped_and_reported_not_read_as_if_it_were_absent() {
        let negated = condition(
            SNOMED,
            "363406005",
            json!({"modifierExtension": [{"url": "https://ehr.example.org/fhir/StructureDefinition/negated", "valueBoolean": true}]}),
        );
        let (facts, record) = facts_of(DataKey::Conditions, vec![negated]);
        assert!(facts.active_cancer.is_empty());
        assert_eq!(record.skipped.len(), 1);
        assert_eq!(record.skipped[0].1.reason, SkipReason::ModifierExtension);
        assert_eq!(record.skipped[0].1.id.as_deref(), Some("c1"));
    }

    #[test]
    fn a_completed_duplex_counts_for_seven_days_and_a_pending_one_for_seven_days_from_its_order() {
        let duplex = |id: &str, status: &str, days_ago: i64| {
            json!({"resourceType": "ServiceRequest", "id": id, "status": status, "intent": "order",
                   "code": {"coding": [{"system": LOINC, "code": "39432-0"}]},
                   "subject": {"reference": format!("Patient/{PATIENT}")}, "authoredOn": day(days_ago)})
        };
        let (facts, _) = facts_of(
            DataKey::ServiceRequests,
            vec![
                duplex("done", "completed", 6),
                duplex("old", "completed", 9),
                duplex("pending", "active", 2),
                duplex("stale", "active", 10),
            ],
        );
        let states: Vec<(OrderState, Option<Side>)> = facts.duplex_orders.iter().map(|d| (d.state, d.side)).collect();
        assert_eq!(states, vec![(OrderState::Completed, Some(Side::Left)), (OrderState::Pending, Some(Side::Left))]);
    }
}
