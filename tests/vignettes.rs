//! Every clinical vignette of ../shared/vignettes (patient-view) and of tests/vignettes (order
//! hooks), one test each, through the HTTP API.

mod support;

use libtest_mimic::{Arguments, Failed, Trial};
use support::{expectation_problems, load_order_vignettes, load_vignettes, protocol_problems, spawn_app};

fn main() {
    let arguments = Arguments::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let app = std::sync::Arc::new(runtime.block_on(spawn_app()));
    let now = time::OffsetDateTime::now_utc();
    let mut vignettes = load_vignettes(now);
    assert!(vignettes.len() >= 14, "expected the shared vignettes, found {}", vignettes.len());
    let order_vignettes = load_order_vignettes(now);
    assert!(order_vignettes.len() >= 10, "expected the order-hook vignettes, found {}", order_vignettes.len());
    vignettes.extend(order_vignettes);
    let handle = runtime.handle().clone();
    let trials = vignettes
        .into_iter()
        .map(|vignette| {
            let app = app.clone();
            let handle = handle.clone();
            Trial::test(format!("vignette::{}::{}", vignette.service, vignette.name), move || {
                handle.block_on(async {
                    let response =
                        app.post_json(&format!("/cds-services/{}", vignette.service), &vignette.request).await;
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.map_err(|e| Failed::from(e.to_string()))?;
                    let patient_id = vignette.request["context"]["patientId"].as_str().unwrap_or_default();
                    let mut problems = expectation_problems(&vignette.expect, status, &body);
                    if status == 200 {
                        problems.extend(protocol_problems(&body, patient_id));
                    }
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(Failed::from(format!("{}\nresponse: {body:#}", problems.join("\n"))))
                    }
                })
            })
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit();
}
