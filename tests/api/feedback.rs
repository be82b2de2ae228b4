//! Feedback (CDS Hooks 2.0): validated item by item, stored durably and once, joined to the card
//! it answers; the summary. Every test runs against SQLite and PostgreSQL.

use std::collections::BTreeMap;

use serde_json::json;

use crate::on_both_backends;
use crate::support::{
    Backend, TestApp, TestDatabase, audited, feedback_item, load_vignettes, now_rfc3339, spawn_app, spawn_app_on,
    vignette_request,
};

const SERVICE: &str = "/cds-services/posterior-knee-pain";
const FEEDBACK: &str = "/cds-services/posterior-knee-pain/feedback";
const SUMMARY: &str = "/cds-services/posterior-knee-pain/feedback/summary";
const SERVICE_ID: &str = "posterior-knee-pain";

/// Posts a vignette and returns the response once its audit record is stored.
async fn cards_for(app: &TestApp, database: &TestDatabase, vignette: &str) -> serde_json::Value {
    let request = vignette_request(vignette);
    let response = app.post_json(SERVICE, &request).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    audited(&database.store(), request["hookInstance"].as_str().expect("hookInstance")).await;
    body
}

async fn post_feedback(app: &TestApp, items: Vec<serde_json::Value>) -> reqwest::Response {
    app.post_json(FEEDBACK, &json!({ "feedback": items })).await
}

async fn outcome_text(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("application/fhir+json"));
    let body: serde_json::Value = response.json().await.expect("an OperationOutcome");
    assert_eq!(body["resourceType"], "OperationOutcome");
    body["issue"][0]["diagnostics"].as_str().expect("diagnostics").to_owned()
}

async fn feedback_on_a_card_is_stored_and_joined_to_the_card(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let body = cards_for(&app, &database, "dvt-likely-with-cancer-on-record").await;
    let card = &body["cards"][0];
    let card_uuid = card["uuid"].as_str().expect("uuid");
    let suggestion = card["suggestions"][0]["uuid"].as_str().expect("a suggestion");
    let mut accepted = feedback_item(card_uuid, "accepted", &now_rfc3339());
    accepted["acceptedSuggestions"] = json!([{ "id": suggestion }]);
    let response = post_feedback(&app, vec![accepted]).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.bytes().await.expect("a body").is_empty(), "CDS Hooks feedback answers with no body");

    let stored = database.store().feedback(SERVICE_ID).await.expect("readable");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].card.to_string(), card_uuid);
    assert_eq!(stored[0].outcome, "accepted");
    assert!(stored[0].card_known, "the card is in the audit trail");
    assert_eq!(stored[0].accepted_suggestions, [suggestion]);
}

async fn an_override_keeps_its_reason_and_comment(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let body = cards_for(&app, &database, "dvt-likely-with-cancer-on-record").await;
    let card = &body["cards"][0];
    let reason = card["overrideReasons"][0].clone();
    let mut overridden = feedback_item(card["uuid"].as_str().expect("uuid"), "overridden", "2026-11-24T12:00:00+01:00");
    overridden["overrideReason"] = json!({ "reason": reason, "userComment": "seen by vascular" });
    assert_eq!(post_feedback(&app, vec![overridden]).await.status().as_u16(), 200);

    let stored = database.store().feedback(SERVICE_ID).await.expect("readable");
    assert_eq!(stored[0].outcome, "overridden");
    assert_eq!(stored[0].reason.as_ref().map(|c| c.code.as_str()), reason["code"].as_str());
    assert_eq!(stored[0].user_comment.as_deref(), Some("seen by vascular"));
    assert_eq!(stored[0].outcome_at, time::macros::datetime!(2026-11-24 11:00 UTC));
}

async fn the_same_item_sent_twice_is_stored_once(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let card = uuid::Uuid::new_v4().to_string();
    let item = feedback_item(&card, "overridden", "2026-11-24T12:00:00Z");
    // The same instant written another way is the same item.
    let same = feedback_item(&card, "overridden", "2026-11-24T13:00:00.000+01:00");
    for body in [vec![item.clone()], vec![item.clone(), same], vec![item]] {
        assert_eq!(post_feedback(&app, body).await.status().as_u16(), 200);
    }
    // Another outcome, or another time, is another item.
    let accepted = json!({"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-11-24T12:00:00Z",
                          "acceptedSuggestions": [{"id": uuid::Uuid::new_v4()}]});
    let later = feedback_item(&card, "overridden", "2026-11-24T12:00:01Z");
    assert_eq!(post_feedback(&app, vec![accepted, later]).await.status().as_u16(), 200);
    let stored = database.store().feedback(SERVICE_ID).await.expect("readable");
    assert_eq!(stored.len(), 3, "{stored:#?}");
}

async fn feedback_about_an_unknown_card_is_accepted_and_marked(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let card = uuid::Uuid::new_v4().to_string();
    let response = post_feedback(&app, vec![feedback_item(&card, "overridden", &now_rfc3339())]).await;
    assert_eq!(response.status().as_u16(), 200);
    let stored = database.store().feedback(SERVICE_ID).await.expect("readable");
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].card_known, "marked as about an unknown card");
    let summary: serde_json::Value = app.get(SUMMARY).await.json().await.expect("JSON");
    assert_eq!(summary["feedbackOnUnknownCards"], 1);
    assert_eq!(summary["overridden"], 0, "not counted against any topic");
}

async fn a_card_audited_after_its_feedback_arrived_is_then_known(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let body: serde_json::Value = app.post_json(SERVICE, &request).await.json().await.expect("JSON");
    let card = body["cards"][0]["uuid"].as_str().expect("uuid");
    // No waiting for the audit writer: the feedback may arrive first.
    assert_eq!(post_feedback(&app, vec![feedback_item(card, "overridden", &now_rfc3339())]).await.status(), 200);
    audited(&database.store(), request["hookInstance"].as_str().expect("hookInstance")).await;
    let stored = database.store().feedback(SERVICE_ID).await.expect("readable");
    assert!(stored[0].card_known, "the audit record marks earlier feedback on its cards");
}

async fn an_invalid_item_is_a_400_naming_its_index_and_field_and_nothing_is_stored(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let good = feedback_item(&uuid::Uuid::new_v4().to_string(), "overridden", &now_rfc3339());
    let mut bad = feedback_item(&uuid::Uuid::new_v4().to_string(), "accepted", &now_rfc3339());
    bad["acceptedSuggestions"] = json!([{ "id": "Jane Doe's duplex" }]);
    let text = outcome_text(post_feedback(&app, vec![good.clone(), bad]).await, 400).await;
    assert_eq!(text, "feedback[1].acceptedSuggestions[0].id must be the uuid of a suggestion of the card");
    let mut late = good.clone();
    late["outcomeTimestamp"] = json!("24/11/2026 Jane Doe");
    let text = outcome_text(post_feedback(&app, vec![good, late]).await, 400).await;
    assert!(text.starts_with("feedback[1].outcomeTimestamp"), "{text}");
    assert!(!text.contains("Jane"), "{text}");
    let text = outcome_text(app.post_raw(FEEDBACK, b"{\"feedback\": [".to_vec()).await, 400).await;
    assert!(text.starts_with("the request body is not valid JSON"), "{text}");
    assert!(database.store().feedback(SERVICE_ID).await.expect("readable").is_empty(), "all or nothing");
}

/// Scripted: every vignette through the hook, then feedback on the cards by a fixed pattern; the
/// summary must show exactly the figures the script produced.
async fn the_summary_shows_real_figures_after_a_scripted_run_of_cards_and_feedback(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let started = now_rfc3339();
    #[derive(Default, Debug)]
    struct Expected {
        cards: i64,
        accepted: i64,
        overridden: i64,
        reasons: BTreeMap<String, i64>,
    }
    let mut expected: BTreeMap<(String, String), Expected> = BTreeMap::new();
    let mut invocations = 0;
    let mut feedback = Vec::new();
    let mut index = 0usize;
    for vignette in load_vignettes(time::OffsetDateTime::now_utc()) {
        let response = app.post_json(SERVICE, &vignette.request).await;
        if response.status().as_u16() != 200 {
            continue;
        }
        invocations += 1;
        let body: serde_json::Value = response.json().await.expect("JSON");
        for card in body["cards"].as_array().expect("cards") {
            let key = (
                card["source"]["topic"]["code"].as_str().expect("topic").to_owned(),
                card["indicator"].as_str().expect("indicator").to_owned(),
            );
            let figures = expected.entry(key).or_default();
            figures.cards += 1;
            let uuid = card["uuid"].as_str().expect("uuid");
            let suggestion = card["suggestions"][0]["uuid"].as_str();
            let reason = card["overrideReasons"][0].clone();
            let timestamp = now_rfc3339();
            let mut item = feedback_item(uuid, "overridden", &timestamp);
            match (index % 4, suggestion) {
                (0, Some(suggestion)) => {
                    item = feedback_item(uuid, "accepted", &timestamp);
                    item["acceptedSuggestions"] = json!([{ "id": suggestion }]);
                    figures.accepted += 1;
                }
                (0 | 1, _) => {
                    item["overrideReason"] = json!({ "reason": reason });
                    figures.overridden += 1;
                    *figures.reasons.entry(reason["code"].as_str().expect("code").to_owned()).or_default() += 1;
                }
                (2, _) => {
                    item["overrideReason"] = json!({ "userComment": "other plan" });
                    figures.overridden += 1;
                }
                _ => {}
            }
            if index % 4 != 3 {
                feedback.push(item);
            }
            index += 1;
        }
        audited(&database.store(), vignette.request["hookInstance"].as_str().expect("hookInstance")).await;
    }
    assert!(invocations >= 10 && index >= 15, "a run worth summarising: {invocations} calls, {index} cards");
    assert_eq!(post_feedback(&app, feedback).await.status().as_u16(), 200);
    // One item about a card the service never showed.
    let stray = feedback_item(&uuid::Uuid::new_v4().to_string(), "overridden", &now_rfc3339());
    assert_eq!(post_feedback(&app, vec![stray]).await.status().as_u16(), 200);

    let response = app.get(SUMMARY).await;
    assert_eq!(response.status().as_u16(), 200);
    let summary: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(summary["serviceId"], SERVICE_ID);
    assert_eq!(summary["invocations"], invocations);
    assert_eq!(summary["cards"], expected.values().map(|e| e.cards).sum::<i64>());
    assert_eq!(summary["accepted"], expected.values().map(|e| e.accepted).sum::<i64>());
    assert_eq!(summary["overridden"], expected.values().map(|e| e.overridden).sum::<i64>());
    assert_eq!(summary["feedbackOnUnknownCards"], 1);
    let topics = summary["topics"].as_array().expect("topics");
    assert_eq!(topics.len(), expected.len());
    for topic in topics {
        let key =
            (topic["topic"].as_str().expect("topic").to_owned(), topic["indicator"].as_str().expect("i").to_owned());
        let figures = &expected[&key];
        assert_eq!(topic["cards"], figures.cards, "{key:?}");
        assert_eq!(topic["accepted"], figures.accepted, "{key:?}");
        assert_eq!(topic["overridden"], figures.overridden, "{key:?}");
        let reasons: BTreeMap<String, i64> = topic["overrideReasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (r["reason"]["code"].as_str().expect("code").to_owned(), r["count"].as_i64().expect("count")))
            .collect();
        assert_eq!(reasons, figures.reasons, "{key:?}");
        let with_reason: i64 = figures.reasons.values().sum();
        assert_eq!(topic["overriddenWithoutReason"], figures.overridden - with_reason, "{key:?}");
        let answered = figures.accepted + figures.overridden;
        if answered > 0 {
            let rate = topic["overrideRate"].as_f64().expect("a rate");
            assert!((rate - figures.overridden as f64 / answered as f64).abs() < 0.001, "{key:?}: {rate}");
        } else {
            assert!(topic.get("overrideRate").is_none());
        }
    }
    let ranks: Vec<u8> = topics
        .iter()
        .map(|t| match t["indicator"].as_str() {
            Some("critical") => 0,
            Some("warning") => 1,
            _ => 2,
        })
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "most urgent first: {ranks:?}");

    // A window that ends before the run shows none of it.
    let before: serde_json::Value = app
        .get(&format!("{SUMMARY}?from=2020-01-01T00:00:00Z&to={}", started.replace('+', "%2B")))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!((before["invocations"].clone(), before["cards"].clone()), (json!(0), json!(0)));
    assert_eq!(before["topics"], json!([]));
}

/// PostgreSQL cannot store U+0000 in text: such a comment or code is the client's error (400
/// naming the field), on every backend alike, never a database failure.
async fn a_nul_character_in_feedback_text_is_a_400_naming_the_field(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let card = uuid::Uuid::new_v4().to_string();
    let mut item = feedback_item(&card, "overridden", &now_rfc3339());
    item["overrideReason"] = json!({"userComment": "duplex done\u{0} yesterday"});
    let text = outcome_text(post_feedback(&app, vec![item.clone()]).await, 400).await;
    assert_eq!(text, "feedback[0].overrideReason.userComment must not contain U+0000");
    item["overrideReason"] = json!({"reason": {"system": "https://popliteal.dev/CodeSystem/override-reason",
                                               "code": "\u{0}"}});
    let text = outcome_text(post_feedback(&app, vec![item.clone()]).await, 400).await;
    assert_eq!(text, "feedback[0].overrideReason.reason.code must not contain U+0000");
    assert!(database.store().feedback(SERVICE_ID).await.expect("readable").is_empty(), "nothing stored");

    // Without it the same comment is stored.
    item["overrideReason"] = json!({"userComment": "duplex done yesterday"});
    assert_eq!(post_feedback(&app, vec![item]).await.status().as_u16(), 200);
    assert_eq!(database.store().feedback(SERVICE_ID).await.expect("readable").len(), 1);
}

on_both_backends!(
    a_nul_character_in_feedback_text_is_a_400_naming_the_field,
    feedback_on_a_card_is_stored_and_joined_to_the_card,
    an_override_keeps_its_reason_and_comment,
    the_same_item_sent_twice_is_stored_once,
    feedback_about_an_unknown_card_is_accepted_and_marked,
    a_card_audited_after_its_feedback_arrived_is_then_known,
    an_invalid_item_is_a_400_naming_its_index_and_field_and_nothing_is_stored,
    the_summary_shows_real_figures_after_a_scripted_run_of_cards_and_feedback,
);

#[tokio::test]
async fn feedback_for_an_unknown_service_is_a_404() {
    let app = spawn_app().await;
    let body = json!({"feedback": [feedback_item(&uuid::Uuid::new_v4().to_string(), "overridden", &now_rfc3339())]});
    outcome_text(app.post_json("/cds-services/no-such-service/feedback", &body).await, 404).await;
    outcome_text(app.get("/cds-services/no-such-service/feedback/summary").await, 404).await;
}

#[tokio::test]
async fn the_summary_window_is_checked() {
    let app = spawn_app().await;
    for query in ["from=yesterday", "to=2026-11-24", "from=2026-11-24T00:00:00Z&to=2026-11-23T00:00:00Z", "from=x&to=y"]
    {
        let text = outcome_text(app.get(&format!("{SUMMARY}?{query}")).await, 400).await;
        assert!(!text.contains("yesterday"), "{text}");
    }
    // A `+` offset arrives as a space when not percent-encoded; both are read.
    for from in ["2026-11-01T00:00:00+01:00", "2026-11-01T00:00:00%2B01:00"] {
        let response = app.get(&format!("{SUMMARY}?from={from}&to=2026-11-30T00:00:00Z")).await;
        assert_eq!(response.status().as_u16(), 200, "{from}");
        let summary: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(summary["from"], "2026-11-01T00:00:00+01:00");
    }
}

#[tokio::test]
async fn a_summary_window_with_from_equal_to_to_is_empty_and_a_reversed_one_is_refused() {
    let app = spawn_app().await;
    let instant = "2026-11-24T12:00:00Z";
    let response = app.get(&format!("{SUMMARY}?from={instant}&to={instant}")).await;
    assert_eq!(response.status().as_u16(), 200, "[t, t) is a valid, empty window");
    let summary: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!((summary["from"].as_str(), summary["to"].as_str()), (Some(instant), Some(instant)));
    for count in ["invocations", "cards", "accepted", "overridden", "feedbackOnUnknownCards"] {
        assert_eq!(summary[count], 0, "{count}");
    }
    assert_eq!(summary["topics"], json!([]));

    // The same instant written with another offset is the same window.
    let response = app.get(&format!("{SUMMARY}?from={instant}&to=2026-11-24T13:00:00%2B01:00")).await;
    assert_eq!(response.status().as_u16(), 200);

    // One microsecond the wrong way round is a reversed window: the client swapped them.
    let text =
        outcome_text(app.get(&format!("{SUMMARY}?from=2026-11-24T12:00:00.000001Z&to={instant}")).await, 400).await;
    assert_eq!(text, "from must not be after to");
}

#[tokio::test]
async fn a_summary_that_ends_in_year_0_starts_there_and_names_its_window_in_rfc_3339() {
    let app = spawn_app().await;
    // The default start (30 days before `to`) cannot go before what RFC 3339 can write.
    let response = app.get(&format!("{SUMMARY}?to=0000-01-01T00:00:00Z")).await;
    assert_eq!(response.status().as_u16(), 200);
    let summary: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(summary["from"], "0000-01-01T00:00:00Z");
    assert_eq!(summary["to"], "0000-01-01T00:00:00Z");
}

#[tokio::test]
async fn the_summary_defaults_to_the_last_30_days() {
    let app = spawn_app().await;
    let summary: serde_json::Value = app.get(SUMMARY).await.json().await.expect("JSON");
    let parse = |field: &str| {
        time::OffsetDateTime::parse(
            summary[field].as_str().expect(field),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339")
    };
    assert_eq!(parse("to") - parse("from"), time::Duration::days(30));
    assert!((time::OffsetDateTime::now_utc() - parse("to")).abs() < time::Duration::minutes(1));
}

#[tokio::test]
async fn a_sqlite_url_without_a_mode_creates_the_file_and_feedback_is_stored_in_it() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let path = database.path.clone().expect("a SQLite file");
    assert!(!path.exists(), "no file before the service starts");
    let without_mode = format!("sqlite://{}", path.display());
    let app = spawn_app_on(&database, move |settings| settings.database.url = without_mode.into()).await;
    let card = uuid::Uuid::new_v4().to_string();
    let response = post_feedback(&app, vec![feedback_item(&card, "overridden", &now_rfc3339())]).await;
    assert_eq!(response.status().as_u16(), 200, "stored, not 503 'unable to open database file'");
    assert!(path.is_file(), "the service created {}", path.display());
    let stored = database.store().feedback(SERVICE_ID).await.expect("readable");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].card.to_string(), card);
}
