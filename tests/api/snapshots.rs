//! Snapshots of the card JSON for a fixed clock, so wording and structure changes are reviewed.
//! UUIDs are random per call and redacted.

use popliteal::catalogue::ServiceKind;
use popliteal::configuration::Settings;
use popliteal::evaluate::{EvaluationSettings, Knowledge, evaluate};
use popliteal::fhir::record::PatientRecord;
use popliteal::protocol::card::CdsResponse;
use popliteal::protocol::request::HookRequest;
use time::macros::datetime;

use crate::support::{load_vignettes, test_settings};

const NOW: time::OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

fn cards_of(name: &str) -> serde_json::Value {
    let settings: Settings = test_settings(|_| {});
    let knowledge = Knowledge::embedded().expect("the knowledge loads");
    let evaluation = EvaluationSettings {
        questionnaire_canonical: settings.questionnaire_canonical(),
        questionnaire_url: settings.questionnaire_public_url(),
        stale_after_days: settings.questionnaire.stale_after_days,
    };
    let vignette = load_vignettes(NOW).into_iter().find(|v| v.name == name).expect("vignette");
    let body = serde_json::to_vec(&vignette.request).expect("serialise");
    let request = HookRequest::parse(&body).expect("a valid request");
    request.check_for(ServiceKind::PatientView).expect("a patient-view request");
    let record = PatientRecord::from_prefetch(&request.prefetch);
    let outcome =
        evaluate(ServiceKind::PatientView, &request, &record, &knowledge, &evaluation, NOW).expect("evaluates");
    serde_json::to_value(CdsResponse { cards: outcome.cards }).expect("JSON")
}

macro_rules! snapshot {
    ($test:ident, $vignette:literal) => {
        #[test]
        fn $test() {
            insta::assert_json_snapshot!(cards_of($vignette), {
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
