//! Benchmark payloads, built from the shared data: a realistic patient (~50 resources, ~60 KB:
//! several QuestionnaireResponses, Synthea Conditions, Observations, MedicationRequests and
//! Procedures) and a small one (~5 KB, one vignette). Shared by `examples/bench_payloads.rs`
//! (the load benchmark) and `benches/evaluation.rs` (criterion).
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};

fn shared(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_json::from_str(&text).expect("shared data is JSON")
}

/// Replaces the vignettes' `{{now-Nh}}` and `{{today-Nd}}` placeholders relative to `now`.
fn dated(value: &Value, now: time::OffsetDateTime) -> Value {
    let text = value.to_string();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("closed placeholder");
        let token = &after[..end];
        if let Some(hours) = token.strip_prefix("now-").and_then(|t| t.strip_suffix('h')) {
            let instant = now - time::Duration::hours(hours.parse().expect("hours"));
            out.push_str(
                &instant
                    .replace_nanosecond(0)
                    .expect("valid")
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("format"),
            );
        } else if let Some(days) = token.strip_prefix("today-").and_then(|t| t.strip_suffix('d')) {
            out.push_str(&(now - time::Duration::days(days.parse().expect("days"))).date().to_string());
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).expect("JSON")
}

fn bundle(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries})
}

const SMALL_RECORD: &str = "fhir-data/synthea/Chauncey_Johnston_f4673866-81fb-411a-8486-0c27f2a5b480.json";

/// The small request: one vignette as the EHR would send it.
pub fn small_request(now: time::OffsetDateTime) -> Value {
    let mut request = dated(&shared("vignettes/baker-cyst-with-mechanical-symptoms.json")["request"], now);
    let patient_id = request["context"]["patientId"].as_str().expect("patient").to_owned();
    request["prefetch"]["conditions"] = bundle(synthea(SMALL_RECORD, "Condition", 3, &patient_id, false));
    request["prefetch"]["observations"] = bundle(synthea(SMALL_RECORD, "Observation", 3, &patient_id, false));
    request
}

/// The realistic request: a DVT-likely intake (three responses: the latest counts) with a real
/// Synthea record.
pub fn large_request(now: time::OffsetDateTime) -> Value {
    let mut request = dated(&shared("vignettes/dvt-likely-with-cancer-on-record.json")["request"], now);
    let patient_id = request["context"]["patientId"].as_str().expect("patient").to_owned();
    const RECORD: &str = "fhir-data/synthea/Kristopher_Upton_1283d4ec-ec47-4c84-ab89-8ac2fad24015.json";
    let take = |resource_type: &str, count: usize| synthea(RECORD, resource_type, count, &patient_id, true);
    let prefetch = &mut request["prefetch"];
    let latest = prefetch["questionnaireResponses"]["entry"][0].clone();
    let mut responses = vec![latest.clone()];
    for (i, hours) in [(2, 72), (3, 150), (4, 200), (5, 260), (6, 320)] {
        let mut older = latest.clone();
        older["resource"]["id"] = json!(format!("qr{i}"));
        older["resource"]["authored"] = json!((now - time::Duration::hours(hours)).date().to_string());
        responses.push(older);
    }
    prefetch["questionnaireResponses"] = bundle(responses);
    let mut conditions = prefetch["conditions"]["entry"].as_array().expect("entries").clone();
    conditions.extend(take("Condition", 18));
    prefetch["conditions"] = bundle(conditions);
    prefetch["observations"] = bundle(take("Observation", 22));
    prefetch["medications"] = bundle(take("MedicationRequest", 8));
    prefetch["procedures"] = bundle(take("Procedure", 5));
    request
}

/// Synthea resources of one type from `file`, made to belong to `patient_id`; with
/// `narrative`, each carries a generated narrative as EHR APIs send (Synthea has none).
fn synthea(file: &str, resource_type: &str, count: usize, patient_id: &str, narrative: bool) -> Vec<Value> {
    let synthea = shared(file);
    synthea["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["resource"]["resourceType"] == resource_type)
        .take(count)
        .map(|e| {
            let mut resource = e["resource"].clone();
            resource["subject"] = json!({"reference": format!("Patient/{patient_id}")});
            resource.as_object_mut().expect("object").remove("encounter");
            if narrative {
                let what = resource["code"]["text"].as_str().unwrap_or(resource_type).to_owned();
                resource["text"] = json!({
                    "status": "generated",
                    "div": format!(
                        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>{resource_type}</b>: {what}</p>\
                         <table><tr><th>Status</th><td>recorded</td></tr><tr><th>Subject</th><td>Patient/{patient_id}</td></tr>\
                         <tr><th>Summary</th><td>{what}; generated narrative as sent by the EHR with each resource, \
                         for display by clients that do not render the coded content.</td></tr></table></div>"
                    )
                });
            }
            json!({"fullUrl": e["fullUrl"], "resource": resource})
        })
        .collect()
}
