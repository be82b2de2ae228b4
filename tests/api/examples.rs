//! The example requests of `cds-hooks/examples/` (used by the README's curl command) give cards.

use crate::support::{card, protocol_problems, spawn_app};

fn example(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-hooks/examples").join(name);
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("valid")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let text = std::fs::read_to_string(path).expect("example exists").replace("{{now}}", &now);
    serde_json::from_str(&text).expect("example is JSON")
}

#[tokio::test]
async fn the_readme_examples_return_the_cards_they_promise() {
    let app = spawn_app().await;
    for (name, topic, indicator) in [
        ("patient-view-dvt-likely.json", "dvt-suspected", "critical"),
        ("patient-view-baker-cyst.json", "baker-cyst", "info"),
    ] {
        let request = example(name);
        let response = app.post_json("/cds-services/posterior-knee-pain", &request).await;
        assert_eq!(response.status().as_u16(), 200, "{name}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(card(&body, topic)["indicator"], indicator, "{name}");
        let patient = request["context"]["patientId"].as_str().expect("patient");
        assert!(protocol_problems(&body, patient).is_empty(), "{name}");
    }
}
