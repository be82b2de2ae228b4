use std::collections::BTreeSet;

use popliteal::knee::question::Question;

use crate::support::spawn_app;

/// The linkIds of the contract's table (../shared/spec/questionnaire-contract.md).
fn contract_link_ids() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/questionnaire-contract.md");
    let text = std::fs::read_to_string(&path).expect("the contract is beside the repository");
    let table = text.split("| linkId | type | meaning |").nth(1).expect("the linkId table");
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
        .collect()
}

fn link_ids(items: &serde_json::Value, found: &mut Vec<(String, String)>) {
    for item in items.as_array().into_iter().flatten() {
        found.push((
            item["linkId"].as_str().unwrap_or_default().to_owned(),
            item["type"].as_str().unwrap_or_default().to_owned(),
        ));
        link_ids(&item["item"], found);
    }
}

#[test]
fn the_rules_know_exactly_the_contract_link_ids() {
    let ours: BTreeSet<String> = Question::ALL.iter().map(|q| q.link_id().to_owned()).collect();
    assert_eq!(ours, contract_link_ids());
}

#[tokio::test]
async fn the_questionnaire_is_served_with_every_contract_link_id_once() {
    let app = spawn_app().await;
    let response = app.get("/fhir/Questionnaire/posterior-knee-pain").await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"].to_str().expect("ascii").starts_with("application/fhir+json"),
        "FHIR content type"
    );
    let questionnaire: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(questionnaire["resourceType"], "Questionnaire");
    assert_eq!(questionnaire["url"], "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain");
    assert_eq!(questionnaire["status"], "active");
    let mut found = Vec::new();
    link_ids(&questionnaire["item"], &mut found);
    let questions: Vec<&(String, String)> = found.iter().filter(|(_, t)| t != "group").collect();
    let unique: BTreeSet<String> = questions.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(unique.len(), questions.len(), "a linkId appears twice");
    assert_eq!(unique, contract_link_ids());
    for (id, kind) in questions {
        let expected = match id.as_str() {
            "side" => "choice",
            "duration-weeks" => "integer",
            _ => "boolean",
        };
        assert_eq!(kind, expected, "{id}");
    }
    // The typed model reads it too.
    let parsed: Result<fhir_sdk::r4b::resources::Questionnaire, _> = serde_json::from_value(questionnaire);
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[tokio::test]
async fn the_canonical_follows_the_configured_base() {
    let app =
        crate::support::spawn_app_with(|s| s.questionnaire.canonical_base = "https://cds.hospital.example".into())
            .await;
    let questionnaire: serde_json::Value =
        app.get("/fhir/Questionnaire/posterior-knee-pain").await.json().await.expect("JSON");
    assert_eq!(questionnaire["url"], "https://cds.hospital.example/fhir/Questionnaire/posterior-knee-pain");
}

#[tokio::test]
async fn an_unknown_questionnaire_is_a_404_operation_outcome() {
    let app = spawn_app().await;
    let response = app.get("/fhir/Questionnaire/phq-9").await;
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
}
