//! Snapshots of the card JSON for a fixed clock, so wording and structure changes are reviewed.
//! UUIDs are random per call and redacted.

use popliteal::catalogue::ServiceKind;
use popliteal::configuration::Settings;
use popliteal::evaluate::{EvaluationSettings, Knowledge, evaluate};
use popliteal::fhir::assembly;
use popliteal::fhir::record::{Cause, DataKey, KeyData, PatientRecord, Provenance};
use popliteal::protocol::card::CdsResponse;
use popliteal::protocol::request::HookRequest;
use serde_json::{Value, json};
use time::macros::datetime;

use crate::support::{load_order_vignettes, load_vignettes, test_settings};

const NOW: time::OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

/// The cards for a request evaluated at `NOW`, after `adjust` had its say on the record.
fn cards_for(service: ServiceKind, request: &Value, adjust: impl FnOnce(&mut PatientRecord)) -> Value {
    let settings: Settings = test_settings(|_| {});
    let knowledge = Knowledge::embedded().expect("the knowledge loads");
    let evaluation = EvaluationSettings::from_settings(&settings);
    let body = serde_json::to_vec(request).expect("serialise");
    let request = HookRequest::parse(&body).expect("a valid request");
    request.check_for(service).expect("a request for this service");
    let mut record = assembly::from_prefetch_alone(&request.prefetch);
    adjust(&mut record);
    let outcome = evaluate(service, &request, &record, &knowledge, &evaluation, NOW).expect("evaluates");
    serde_json::to_value(CdsResponse { cards: outcome.cards }).expect("JSON")
}

fn vignette(name: &str) -> Value {
    load_vignettes(NOW).into_iter().find(|v| v.name == name).expect("vignette").request
}

fn cards_of(name: &str) -> Value {
    cards_for(ServiceKind::PatientView, &vignette(name), |_| {})
}

fn intake_items(request: &mut Value) -> &mut Vec<Value> {
    request["prefetch"]["questionnaireResponses"]["entry"][0]["resource"]["item"].as_array_mut().expect("items")
}

fn answer_yes(mut request: Value, link_id: &str) -> Value {
    let items = intake_items(&mut request);
    items.retain(|item| item["linkId"] != link_id);
    items.push(json!({"linkId": link_id, "answer": [{"valueBoolean": true}]}));
    request
}

/// The order-sign review of a knee MRI drafted while DVT is likely.
fn order_sign_cards() -> Value {
    let vignette = load_order_vignettes(NOW)
        .into_iter()
        .find(|v| v.name == "order-sign-knee-mri-with-dvt-likely")
        .expect("the order vignette");
    cards_for(ServiceKind::OrderSign, &vignette.request, |_| {})
}

/// Knee pain on the record and an intake authored 30 days ago.
fn stale_intake_cards() -> Value {
    let mut request = vignette("no-intake-answers");
    let patient = request["context"]["patientId"].clone();
    request["prefetch"]["questionnaireResponses"] = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "QuestionnaireResponse", "id": "qr-old", "status": "completed",
            "questionnaire": "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain",
            "subject": {"reference": format!("Patient/{}", patient.as_str().expect("id"))},
            "authored": "2026-10-25T09:00:00Z",
            "item": [{"linkId": "rf-calf-pain", "answer": [{"valueBoolean": true}]}]}}]});
    cards_for(ServiceKind::PatientView, &request, |_| {})
}

/// The conditions could not be fetched from the EHR's server in time.
fn fetch_failure_cards() -> Value {
    cards_for(ServiceKind::PatientView, &vignette("dvt-likely-with-cancer-on-record"), |record| {
        record.insert(KeyData::new(DataKey::Conditions), Provenance::Failed(Cause::Timeout));
    })
}

/// Calf pain in a patient who is pregnant.
fn pregnancy_cards() -> Value {
    cards_for(
        ServiceKind::PatientView,
        &answer_yes(vignette("dvt-unlikely-calf-pain-only"), "pregnant-or-postpartum"),
        |_| {},
    )
}

/// The tendon pattern beside possible cauda equina.
fn red_flag_beside_a_pattern_cards() -> Value {
    cards_for(
        ServiceKind::PatientView,
        &answer_yes(vignette("semimembranosus-tendinopathy"), "rf-saddle-bladder-bowel"),
        |_| {},
    )
}

macro_rules! snapshot {
    ($test:ident, $vignette:literal) => {
        snapshot!($test, cards_of($vignette));
    };
    ($test:ident, $cards:expr) => {
        #[test]
        fn $test() {
            insta::assert_json_snapshot!($cards, {
                ".cards[].uuid" => "[uuid]",
                ".cards[].suggestions[].uuid" => "[uuid]",
            });
        }
    };
}

snapshot!(cards_for_dvt_likely_with_cancer_on_record, "dvt-likely-with-cancer-on-record");
snapshot!(cards_for_sudden_calf_swelling_after_a_pop, "sudden-calf-swelling-after-pop");
snapshot!(cards_for_a_baker_cyst_with_mechanical_symptoms, "baker-cyst-with-mechanical-symptoms");
snapshot!(cards_for_semimembranosus_tendinopathy, "semimembranosus-tendinopathy");
snapshot!(cards_for_knee_pain_without_intake, "no-intake-answers");
snapshot!(cards_for_a_record_with_a_malformed_condition, "malformed-resource-is-skipped");
snapshot!(cards_for_dvt_unlikely, "dvt-unlikely-calf-pain-only");
snapshot!(cards_for_dvt_unlikely_at_sixty_with_its_cut_off, "dvt-unlikely-at-sixty-states-the-cut-off");
snapshot!(cards_for_order_sign_with_a_knee_mri_while_dvt_is_likely, order_sign_cards());
snapshot!(cards_for_a_stale_intake, stale_intake_cards());
snapshot!(cards_for_a_record_key_that_could_not_be_fetched, fetch_failure_cards());
snapshot!(cards_for_calf_pain_in_pregnancy, pregnancy_cards());
snapshot!(cards_for_a_pattern_beside_cauda_equina, red_flag_beside_a_pattern_cards());
