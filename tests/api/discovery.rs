use crate::support::spawn_app;

#[tokio::test]
async fn discovery_lists_the_patient_view_service_with_the_contract_prefetch_keys() {
    let app = spawn_app().await;
    let response = app.get("/cds-services").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let services = body["services"].as_array().expect("a services array");
    let service = services.iter().find(|s| s["id"] == "posterior-knee-pain").expect("the service is listed");
    assert_eq!(service["hook"], "patient-view");
    assert!(service["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(service["description"].as_str().is_some_and(|t| !t.is_empty()));
    let mut keys: Vec<&str> = service["prefetch"].as_object().expect("prefetch").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "conditions",
            "medications",
            "observations",
            "patient",
            "procedures",
            "questionnaireResponses",
            "serviceRequests"
        ]
    );
    assert_eq!(service["prefetch"]["patient"], "Patient/{{context.patientId}}");
}

#[tokio::test]
async fn discovery_lists_the_order_hooks_with_the_same_prefetch_keys() {
    let app = spawn_app().await;
    let body: serde_json::Value = app.get("/cds-services").await.json().await.expect("JSON");
    let services = body["services"].as_array().expect("services");
    let patient_view = services.iter().find(|s| s["id"] == "posterior-knee-pain").expect("patient-view");
    for (id, hook) in
        [("posterior-knee-pain-order-select", "order-select"), ("posterior-knee-pain-order-sign", "order-sign")]
    {
        let service = services.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id} is listed"));
        assert_eq!(service["hook"], hook);
        assert_eq!(service["prefetch"], patient_view["prefetch"], "{id}");
    }
    assert_eq!(services.len(), 3);
}
