use crate::support::spawn_app;

#[tokio::test]
async fn health_answers_200_while_the_process_runs() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ok");
}
