//! Any bytes as a hook request body, through what the handler does without HTTP: the depth
//! limit, `HookRequest::parse`, then `evaluate` for the service of the hook named (patient-view
//! otherwise). It must never panic, and every answer must keep the protocol's rules.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use popliteal::catalogue::ServiceKind;
use popliteal::evaluate::{EvaluationSettings, Knowledge, evaluate};
use popliteal::fhir::assembly;
use popliteal::limits::json_depth_exceeds;
use popliteal::protocol::card::CdsResponse;
use popliteal::protocol::request::HookRequest;

/// The service's default `limits.max_json_depth`.
const MAX_JSON_DEPTH: usize = 64;

static KNOWLEDGE: LazyLock<Knowledge> = LazyLock::new(|| Knowledge::embedded().expect("the knowledge loads"));

static SETTINGS: LazyLock<EvaluationSettings> = LazyLock::new(|| EvaluationSettings {
    questionnaire_canonical: "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain".into(),
    questionnaire_url: "http://127.0.0.1:8080/fhir/Questionnaire/posterior-knee-pain".into(),
    stale_after_days: 14,
    intake_launch_url: "http://127.0.0.1:8080/intake/launch".into(),
    intake_app_context: r#"{"questionnaire":"http://cds.example.org/fhir/Questionnaire/posterior-knee-pain|1.0.0"}"#.into(),
});

/// A fixed "now" near the seeds' dates, so runs are reproducible.
const NOW: time::OffsetDateTime = time::macros::datetime!(2026-11-24 12:00 UTC);

fuzz_target!(|data: &[u8]| {
    if json_depth_exceeds(data, MAX_JSON_DEPTH) {
        return;
    }
    let Ok(request) = HookRequest::parse(data) else {
        return;
    };
    let service =
        ServiceKind::ALL.iter().copied().find(|s| s.hook() == request.hook).unwrap_or(ServiceKind::PatientView);
    if request.check_for(service).is_err() {
        return;
    }
    // The record as it is assembled without a FHIR server.
    let record = assembly::from_prefetch_alone(&request.prefetch);
    let Ok(outcome) = evaluate(service, &request, &record, &KNOWLEDGE, &SETTINGS, NOW) else {
        return;
    };
    for card in &outcome.cards {
        let length = card.summary.chars().count();
        assert!((1..140).contains(&length), "summary of {length} characters");
        assert_eq!(
            card.suggestions.is_empty(),
            card.selection_behavior.is_none(),
            "selectionBehavior with suggestions"
        );
        assert!(!card.override_reasons.is_empty(), "override reasons");
    }
    let cards = outcome.cards;
    serde_json::to_vec(&CdsResponse { cards }).expect("the answer serialises");
});
