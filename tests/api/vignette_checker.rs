//! The vignette checker must be able to fail: it is checked against wrong answers here.

use serde_json::json;

use crate::support::{expectation_problems, protocol_problems};

fn response(topic: &str, indicator: &str) -> serde_json::Value {
    json!({"cards": [{
        "uuid": "6f1c1d1e-2a8b-4c55-9a52-2d1f6b0c1a11",
        "summary": "A summary.",
        "detail": "**Why**",
        "indicator": indicator,
        "source": {"label": "x", "topic": {"system": "https://popliteal.dev/CodeSystem/card-topic", "code": topic}},
        "overrideReasons": [{"system": "s", "code": "c", "display": "d"}]
    }]})
}

#[test]
fn a_card_with_the_wrong_indicator_fails_the_expectation() {
    let expect = json!({"cards": {"dvt-suspected": ["critical"]}});
    assert!(expectation_problems(&expect, 200, &response("dvt-suspected", "critical")).is_empty());
    assert!(!expectation_problems(&expect, 200, &response("dvt-suspected", "warning")).is_empty());
}

#[test]
fn any_card_fails_an_exactly_empty_expectation() {
    let expect = json!({"exact_empty": true});
    assert!(expectation_problems(&expect, 200, &json!({"cards": []})).is_empty());
    assert!(!expectation_problems(&expect, 200, &response("baker-cyst", "info")).is_empty());
}

#[test]
fn a_wrong_status_or_a_forbidden_topic_fails() {
    assert!(!expectation_problems(&json!({}), 412, &json!({})).is_empty());
    assert!(!expectation_problems(&json!({"absent": ["baker-cyst"]}), 200, &response("baker-cyst", "info")).is_empty());
    assert!(!expectation_problems(&json!({"first": "critical"}), 200, &response("baker-cyst", "info")).is_empty());
}

#[test]
fn a_missing_wells_extension_fails() {
    let expect = json!({"wells": {"score": 2}});
    assert!(!expectation_problems(&expect, 200, &response("dvt-suspected", "critical")).is_empty());
    assert!(!protocol_problems(&response("dvt-suspected", "critical"), "p").is_empty());
}

#[test]
fn protocol_checks_catch_long_summaries_nulls_and_suggestions_without_selection_behavior() {
    assert!(protocol_problems(&response("baker-cyst", "info"), "p").is_empty());
    let mut long = response("baker-cyst", "info");
    long["cards"][0]["summary"] = json!("x".repeat(140));
    assert!(!protocol_problems(&long, "p").is_empty());
    let mut null = response("baker-cyst", "info");
    null["cards"][0]["detail"] = serde_json::Value::Null;
    assert!(!protocol_problems(&null, "p").is_empty());
    let mut suggestion = response("baker-cyst", "info");
    suggestion["cards"][0]["suggestions"] =
        json!([{"label": "l", "uuid": "6f1c1d1e-2a8b-4c55-9a52-2d1f6b0c1a12", "actions": []}]);
    assert!(!protocol_problems(&suggestion, "p").is_empty());
}
