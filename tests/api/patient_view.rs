//! patient-view behaviour beyond the vignettes: partial records, odd prefetch values, real data.

use serde_json::json;

use crate::support::{card, spawn_app, topics, vignette_request};

const SERVICE: &str = "/cds-services/posterior-knee-pain";

async fn cards_for(request: &serde_json::Value) -> serde_json::Value {
    spawn_app().await.cards(SERVICE, request).await
}

fn wells_source(response: &serde_json::Value, item: &str) -> String {
    let items = card(response, "dvt-suspected")["extension"]["dev.popliteal.wells"]["items"].clone();
    let found = items.as_array().expect("items").iter().find(|i| i["item"] == item).expect("item listed").clone();
    found["source"].as_str().expect("source").to_owned()
}

#[tokio::test]
async fn a_missing_optional_key_is_evaluated_without_it_and_reported_as_unavailable() {
    let mut request = vignette_request("dvt-likely-with-cancer-on-record");
    request["prefetch"].as_object_mut().expect("prefetch").remove("conditions");
    let body = cards_for(&request).await;
    assert_eq!(topics(&body).last().map(String::as_str), Some("data-unavailable"));
    assert!(card(&body, "data-unavailable")["detail"].as_str().expect("detail").contains("conditions"));
    // The cancer on the record could not be seen: the form's "no" is not enough.
    assert_eq!(wells_source(&body, "wells-active-cancer"), "not-assessed");
    let wells = &card(&body, "dvt-suspected")["extension"]["dev.popliteal.wells"];
    assert_eq!(wells["complete"], false);
    // Tenderness and calf swelling still make 2: the red flag stays critical.
    assert_eq!(card(&body, "dvt-suspected")["indicator"], "critical");
}

#[tokio::test]
async fn an_optional_key_that_failed_in_the_ehr_is_reported_as_unavailable() {
    let mut request = vignette_request("dvt-likely-with-cancer-on-record");
    request["prefetch"]["observations"] =
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]});
    let body = cards_for(&request).await;
    assert!(card(&body, "data-unavailable")["detail"].as_str().expect("detail").contains("observations"));
}

#[tokio::test]
async fn a_null_prefetch_key_means_nothing_was_found_not_unavailable() {
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["prefetch"]["conditions"] = serde_json::Value::Null;
    let body = cards_for(&request).await;
    assert!(!topics(&body).contains(&"data-unavailable".to_owned()), "{:?}", topics(&body));
}

#[tokio::test]
async fn a_questionnaire_response_about_another_patient_is_ignored_and_reported() {
    let mut request = vignette_request("dvt-likely-with-cancer-on-record");
    request["prefetch"]["questionnaireResponses"]["entry"][0]["resource"]["subject"]["reference"] =
        json!("Patient/another-patient");
    let body = cards_for(&request).await;
    assert!(!topics(&body).contains(&"dvt-suspected".to_owned()), "another patient's answers were used");
    let detail = card(&body, "data-unavailable")["detail"].as_str().expect("detail").to_owned();
    assert!(detail.contains("another patient"), "{detail}");
}

#[tokio::test]
async fn a_stale_intake_is_not_evaluated_and_the_intake_card_says_so_when_knee_pain_is_on_record() {
    let mut request = vignette_request("dvt-likely-with-cancer-on-record");
    let old = (time::OffsetDateTime::now_utc() - time::Duration::days(20)).date().to_string();
    request["prefetch"]["questionnaireResponses"]["entry"][0]["resource"]["authored"] = json!(old);
    // Without knee pain on the record, a stale intake is silence.
    let silent = cards_for(&request).await;
    assert_eq!(silent, json!({"cards": []}));
    let mut knee_pain = vignette_request("no-intake-answers")["prefetch"]["conditions"]["entry"][0].clone();
    knee_pain["resource"]["subject"]["reference"] = json!("Patient/p-dvt1");
    request["prefetch"]["conditions"]["entry"].as_array_mut().expect("entries").push(knee_pain);
    let body = cards_for(&request).await;
    assert_eq!(topics(&body), ["intake-missing"]);
    let intake = card(&body, "intake-missing");
    assert!(intake["summary"].as_str().expect("summary").contains(&old));
    assert!(
        intake["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["url"].as_str().is_some_and(|u| u.ends_with("/fhir/Questionnaire/posterior-knee-pain")))
    );
}

#[tokio::test]
async fn a_cyst_pattern_never_hides_the_dvt_alert_and_the_alert_comes_first() {
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    let items =
        request["prefetch"]["questionnaireResponses"]["entry"][0]["resource"]["item"].as_array_mut().expect("items");
    for item in items.iter_mut() {
        if item["linkId"] == "rf-calf-pain" {
            item["answer"] = json!([{"valueBoolean": true}]);
        }
    }
    let body = cards_for(&request).await;
    let shown = topics(&body);
    assert_eq!(shown.first().map(String::as_str), Some("dvt-suspected"), "{shown:?}");
    assert!(shown.contains(&"baker-cyst".to_owned()));
    assert!(card(&body, "baker-cyst")["detail"].as_str().expect("detail").contains("does not lower"));
}

#[tokio::test]
async fn nested_answers_in_groups_are_read() {
    let mut request = vignette_request("cold-pale-foot-after-injury");
    let resource = &mut request["prefetch"]["questionnaireResponses"]["entry"][0]["resource"];
    let items = resource["item"].take();
    resource["item"] = json!([{ "linkId": "grp-safety", "item": items }]);
    let body = cards_for(&request).await;
    assert_eq!(card(&body, "limb-ischaemia")["indicator"], "critical");
}

fn synthea_bundle(resource_type: &str, patient_id: &str, entries: &[serde_json::Value]) -> serde_json::Value {
    let entry: Vec<serde_json::Value> = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == resource_type)
        .map(|e| {
            let mut resource = e["resource"].clone();
            for field in ["subject", "patient"] {
                if resource.get(field).is_some() {
                    resource[field] = json!({"reference": format!("Patient/{patient_id}")});
                }
            }
            json!({"fullUrl": e["fullUrl"], "resource": resource})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry})
}

#[tokio::test]
async fn a_real_synthea_record_is_read_without_skipping_anything() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-data/synthea");
    let mut seen = 0;
    for path in std::fs::read_dir(&directory).expect("synthea data beside the repository") {
        let path = path.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bundle: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let entries = bundle["entry"].as_array().expect("entries").clone();
        let patient =
            entries.iter().find(|e| e["resource"]["resourceType"] == "Patient").expect("a patient")["resource"].clone();
        let patient_id = patient["id"].as_str().expect("id").to_owned();
        let mut request = vignette_request("dvt-likely-with-cancer-on-record");
        request["context"]["patientId"] = json!(patient_id);
        request["prefetch"]["patient"] = patient;
        request["prefetch"]["questionnaireResponses"]["entry"][0]["resource"]["subject"]["reference"] =
            json!(format!("Patient/{patient_id}"));
        for (key, resource_type) in [
            ("conditions", "Condition"),
            ("observations", "Observation"),
            ("medications", "MedicationRequest"),
            ("procedures", "Procedure"),
        ] {
            request["prefetch"][key] = synthea_bundle(resource_type, &patient_id, &entries);
        }
        let body = cards_for(&request).await;
        assert!(!topics(&body).contains(&"data-unavailable".to_owned()), "{}: {body:#}", path.display());
        assert!(topics(&body).contains(&"dvt-suspected".to_owned()));
        seen += 1;
    }
    assert_eq!(seen, 3, "the three Synthea patients");
}
