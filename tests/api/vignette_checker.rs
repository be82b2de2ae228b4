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

#[test]
fn an_expectation_the_checker_does_not_know_fails_the_vignette() {
    let expect = json!({"cards": {"baker-cyst": ["info"]}, "wording": [{"topic": "baker-cyst"}]});
    let problems = expectation_problems(&expect, 200, &response("baker-cyst", "info"));
    assert!(problems.iter().any(|p| p.contains("wording")), "{problems:?}");
}

#[test]
fn a_text_rule_fails_when_the_field_breaks_it_and_passes_when_it_holds() {
    let must = |pattern: &str| json!({"text": [{"topic": "baker-cyst", "field": "summary", "pattern": pattern, "rule": "must", "why": "w"}]});
    assert!(expectation_problems(&must("(?i)a summary"), 200, &response("baker-cyst", "info")).is_empty());
    assert!(!expectation_problems(&must("ultrasound"), 200, &response("baker-cyst", "info")).is_empty());
    let must_not =
        json!({"text": [{"topic": "baker-cyst", "field": "card", "pattern": "Why", "rule": "mustnot", "why": "w"}]});
    assert!(!expectation_problems(&must_not, 200, &response("baker-cyst", "info")).is_empty());
    let no_card = must("anything");
    assert!(!expectation_problems(&no_card, 200, &response("nerve-pain", "info")).is_empty(), "a must needs its card");
    let unknown_field =
        json!({"text": [{"topic": "baker-cyst", "field": "title", "pattern": "x", "rule": "must", "why": "w"}]});
    assert!(!expectation_problems(&unknown_field, 200, &response("baker-cyst", "info")).is_empty());
    let unknown_kind =
        json!({"text": [{"topic": "baker-cyst", "field": "summary", "pattern": "x", "rule": "should", "why": "w"}]});
    assert!(!expectation_problems(&unknown_kind, 200, &response("baker-cyst", "info")).is_empty());
}

#[test]
fn protocol_checks_catch_a_link_inside_detail_a_repeated_link_and_the_source_as_a_link() {
    let mut markdown = response("baker-cyst", "info");
    markdown["cards"][0]["detail"] = json!("**Why**\n\nSource: [NICE NG158](https://www.nice.org.uk/guidance/ng158)");
    assert!(!protocol_problems(&markdown, "p").is_empty());
    let mut bare = response("baker-cyst", "info");
    bare["cards"][0]["detail"] = json!("**Why**\n\nSee https://www.nice.org.uk/guidance/ng158");
    assert!(!protocol_problems(&bare, "p").is_empty());
    let link = json!({"label": "NG158", "url": "https://www.nice.org.uk/guidance/ng158", "type": "absolute"});
    let mut repeated = response("baker-cyst", "info");
    repeated["cards"][0]["links"] = json!([link, link]);
    assert!(!protocol_problems(&repeated, "p").is_empty());
    let mut source_again = response("baker-cyst", "info");
    source_again["cards"][0]["source"]["url"] = link["url"].clone();
    source_again["cards"][0]["links"] = json!([link]);
    assert!(!protocol_problems(&source_again, "p").is_empty());
    source_again["cards"][0]["links"] =
        json!([{"label": "Other", "url": "https://pmc.ncbi.nlm.nih.gov/articles/PMC2941578/", "type": "absolute"}]);
    assert!(protocol_problems(&source_again, "p").is_empty());
}
