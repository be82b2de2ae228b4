//! The decisions of clinical-logic.md section 6, through the HTTP API: what each DVT card
//! recommends and says, and how the other cards stand beside a red flag. Each test is one rule.

use serde_json::{Value, json};

use crate::support::{
    TestApp, card, codes_of, date_days_ago as date, spawn_app, suggested_resources, topics, vignette_request,
    with_bundle as with,
};

const SERVICE: &str = "/cds-services/posterior-knee-pain";
const LOINC: &str = "http://loinc.org";
const DUPLEX: &[&str] = &["39420-5", "39432-0", "39443-7"];
const D_DIMER: &[&str] = &["48065-7", "48066-5"];

async fn answer(app: &TestApp, request: &Value) -> Value {
    app.cards(SERVICE, request).await
}

fn items(request: &mut Value) -> &mut Vec<Value> {
    request["prefetch"]["questionnaireResponses"]["entry"][0]["resource"]["item"].as_array_mut().expect("items")
}

/// Sets (or adds) an answer of the intake.
fn answered(mut request: Value, link_id: &str, value: Value) -> Value {
    let items = items(&mut request);
    items.retain(|item| item["linkId"] != link_id);
    items.push(json!({"linkId": link_id, "answer": [value]}));
    request
}

fn yes(request: Value, link_ids: &[&str]) -> Value {
    link_ids.iter().fold(request, |request, id| answered(request, id, json!({"valueBoolean": true})))
}

fn born_years_ago(mut request: Value, years: i64) -> Value {
    let birth = time::OffsetDateTime::now_utc().date() - time::Duration::days(years * 365 + years / 4 + 30);
    request["prefetch"]["patient"]["birthDate"] = json!(birth.to_string());
    request
}

fn patient_reference(request: &Value) -> String {
    format!("Patient/{}", request["context"]["patientId"].as_str().expect("patient"))
}

fn d_dimer(request: &Value, code: &str, days_ago: i64, value: f64, unit: &str) -> Value {
    json!({"resourceType": "Observation", "id": "dd", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code, "display": "Fibrin D-dimer"}]},
        "subject": {"reference": patient_reference(request)},
        "effectiveDateTime": date(days_ago),
        "valueQuantity": {"value": value, "unit": unit}})
}

fn duplex_order(request: &Value, code: &str, status: &str, days_ago: i64) -> Value {
    json!({"resourceType": "ServiceRequest", "id": "scan", "status": status, "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": code, "display": "US.doppler Lower extremity vein"}]},
        "subject": {"reference": patient_reference(request)}, "authoredOn": date(days_ago)})
}

/// Calf pain, every Wells item answered no but the alternative diagnosis: Wells -2, unlikely.
fn unlikely() -> Value {
    vignette_request("dvt-unlikely-calf-pain-only")
}

/// The suggestions of a card: (codes, recommended).
fn suggestions(card: &Value) -> Vec<(Vec<String>, bool)> {
    card["suggestions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let codes = s["actions"].as_array().into_iter().flatten().flat_map(|a| codes_of(&a["resource"])).collect();
            (codes, s["isRecommended"] == true)
        })
        .collect()
}

fn suggests(card: &Value, codes: &[&str]) -> Option<bool> {
    suggestions(card).into_iter().find(|(c, _)| c.iter().any(|c| codes.contains(&c.as_str()))).map(|(_, r)| r)
}

fn text(card: &Value) -> String {
    format!("{}\n{}", card["summary"].as_str().unwrap_or_default(), card["detail"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn a_d_dimer_counts_for_seven_days_and_an_older_one_is_not_read() {
    let app = spawn_app().await;
    let base = unlikely();
    let recent = with(base.clone(), "observations", vec![d_dimer(&base, "48065-7", 6, 900.0, "ug/L")]);
    assert_eq!(card(&answer(&app, &recent).await, "dvt-suspected")["indicator"], "critical");
    let old = with(base.clone(), "observations", vec![d_dimer(&base, "48065-7", 9, 900.0, "ug/L")]);
    let dvt = answer(&app, &old).await;
    let dvt = card(&dvt, "dvt-suspected");
    assert_eq!(dvt["indicator"], "warning");
    assert_eq!(suggests(dvt, D_DIMER), Some(true), "a fresh D-dimer: the old one is not read");
}

#[tokio::test]
async fn dvt_unlikely_with_a_positive_d_dimer_is_critical_with_the_duplex_recommended_and_said_in_the_summary() {
    let app = spawn_app().await;
    let base = unlikely();
    let body =
        answer(&app, &with(base.clone(), "observations", vec![d_dimer(&base, "48065-7", 1, 900.0, "ug/L")])).await;
    let dvt = card(&body, "dvt-suspected");
    assert_eq!(dvt["indicator"], "critical");
    assert_eq!(suggests(dvt, DUPLEX), Some(true));
    assert!(dvt["summary"].as_str().expect("summary").contains("duplex"), "{}", dvt["summary"]);
    assert!(!dvt["summary"].as_str().expect("summary").contains("D-dimer first"), "{}", dvt["summary"]);
}

#[tokio::test]
async fn a_ddu_d_dimer_is_shown_with_its_value_and_date_not_interpreted_and_no_fresh_d_dimer_is_suggested() {
    let app = spawn_app().await;
    let base = unlikely();
    let body =
        answer(&app, &with(base.clone(), "observations", vec![d_dimer(&base, "48066-5", 1, 250.0, "ng/mL")])).await;
    let dvt = card(&body, "dvt-suspected");
    let detail = dvt["detail"].as_str().expect("detail");
    assert!(detail.contains("250 ng/mL") && detail.contains(&date(1)), "{detail}");
    assert!(detail.contains("not interpreted"), "{detail}");
    assert!(!detail.contains("negative") && !detail.contains("positive:"), "never read against a cut-off: {detail}");
    assert_eq!(suggests(dvt, D_DIMER), None, "no fresh D-dimer because of its unit");
    assert!(dvt["summary"].as_str().expect("summary").contains("lab's range"), "{}", dvt["summary"]);
}

#[tokio::test]
async fn recommending_a_d_dimer_states_this_patients_cut_off_age_adjusted_over_fifty() {
    let app = spawn_app().await;
    for (years, cutoff) in [(34, "500 µg/L FEU."), (72, "720 µg/L FEU (age-adjusted")] {
        let body = answer(&app, &born_years_ago(unlikely(), years)).await;
        let dvt = card(&body, "dvt-suspected");
        assert_eq!(suggests(dvt, D_DIMER), Some(true));
        assert!(dvt["detail"].as_str().expect("detail").contains(cutoff), "{years}: {}", dvt["detail"]);
    }
}

#[tokio::test]
async fn on_the_unlikely_path_only_the_d_dimer_is_drafted_and_the_duplex_if_positive_is_advice() {
    let body = answer(&spawn_app().await, &unlikely()).await;
    let dvt = card(&body, "dvt-suspected");
    assert_eq!(suggests(dvt, D_DIMER), Some(true));
    assert_eq!(suggests(dvt, DUPLEX), None, "no duplex drafted before the D-dimer is back");
    assert!(dvt["summary"].as_str().expect("summary").contains("duplex if positive"));
    let all: Vec<String> = suggested_resources(&body).iter().flat_map(|(_, r)| codes_of(r)).collect();
    assert!(!all.iter().any(|c| DUPLEX.contains(&c.as_str())), "{all:?}");
}

#[tokio::test]
async fn a_duplex_completed_this_week_is_named_with_its_date_to_check_and_another_is_offered_not_recommended() {
    let app = spawn_app().await;
    let base = vignette_request("dvt-likely-with-cancer-on-record");
    let done = with(base.clone(), "serviceRequests", vec![duplex_order(&base, "39432-0", "completed", 3)]);
    let body = answer(&app, &done).await;
    let dvt = card(&body, "dvt-suspected");
    assert_eq!(dvt["indicator"], "critical", "the indicator is the score's");
    let summary = dvt["summary"].as_str().expect("summary");
    assert!(summary.contains(&date(3)) && summary.contains("check its result"), "{summary}");
    assert_eq!(suggests(dvt, DUPLEX), Some(false));
    assert_eq!(suggests(dvt, D_DIMER), Some(false), "after a negative scan with DVT likely: D-dimer (NG158)");
    // Older than a week: the scan is not the question any more.
    let old = with(base.clone(), "serviceRequests", vec![duplex_order(&base, "39432-0", "completed", 10)]);
    assert_eq!(suggests(card(&answer(&app, &old).await, "dvt-suspected"), DUPLEX), Some(true));
}

#[tokio::test]
async fn an_anticoagulated_patient_gets_the_duplex_recommended_no_d_dimer_and_a_summary_that_says_so() {
    let base = unlikely();
    let apixaban = json!({"resourceType": "MedicationRequest", "id": "apx", "status": "active", "intent": "order",
        "subject": {"reference": patient_reference(&base)},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1364445", "display": "apixaban 5 MG Oral Tablet"}]}});
    let body = answer(&spawn_app().await, &with(base, "medications", vec![apixaban])).await;
    let dvt = card(&body, "dvt-suspected");
    assert_eq!(dvt["indicator"], "warning", "the indicator is the score's");
    assert_eq!(suggests(dvt, DUPLEX), Some(true));
    assert_eq!(suggests(dvt, D_DIMER), None);
    let summary = dvt["summary"].as_str().expect("summary");
    assert!(summary.contains("Anticoagulated") && summary.contains("duplex"), "{summary}");
    assert!(dvt["detail"].as_str().expect("detail").contains("apixaban 5 MG Oral Tablet"));
}

#[tokio::test]
async fn pregnancy_or_under_18_with_a_dvt_sign_is_critical_with_the_duplex_and_no_verdict_anywhere() {
    let app = spawn_app().await;
    let pregnant = answered(unlikely(), "pregnant-or-postpartum", json!({"valueBoolean": true}));
    let child = born_years_ago(unlikely(), 15);
    for request in [pregnant, child] {
        let body = answer(&app, &request).await;
        let dvt = card(&body, "dvt-suspected");
        assert_eq!(dvt["indicator"], "critical");
        assert_eq!(suggests(dvt, DUPLEX), Some(true));
        assert_eq!(suggests(dvt, D_DIMER), None, "never a D-dimer first");
        let text = text(dvt);
        assert!(text.contains("not validated"), "{text}");
        for verdict in ["DVT likely", "DVT unlikely", "likely (2 or more)", "unlikely (1 or less)"] {
            assert!(!text.contains(verdict), "{verdict} printed for a patient Wells is not validated for: {text}");
        }
        // The items are still shown, for information.
        assert!(text.contains("| Item | Points | Source |"), "{text}");
    }
}

#[tokio::test]
async fn every_dvt_summary_states_the_plan_its_card_recommends() {
    let app = spawn_app().await;
    let base = unlikely();
    let cases = [
        ("D-dimer first", unlikely()),
        ("positive D-dimer", with(base.clone(), "observations", vec![d_dimer(&base, "48065-7", 1, 900.0, "ug/L")])),
        ("likely", vignette_request("dvt-likely-with-cancer-on-record")),
        ("incomplete", vignette_request("dvt-signs-wells-incomplete")),
        ("pregnant", answered(unlikely(), "pregnant-or-postpartum", json!({"valueBoolean": true}))),
    ];
    for (name, request) in cases {
        let body = answer(&app, &request).await;
        let dvt = card(&body, "dvt-suspected");
        let summary = dvt["summary"].as_str().expect("summary").to_lowercase();
        match (suggests(dvt, DUPLEX), suggests(dvt, D_DIMER)) {
            (Some(true), _) => {
                assert!(summary.contains("duplex") && !summary.contains("d-dimer first;"), "{name}: {summary}")
            }
            (_, Some(true)) => assert!(summary.contains("d-dimer first;"), "{name}: {summary}"),
            _ => assert!(summary.contains("complete the score"), "{name}: nothing recommended: {summary}"),
        }
    }
}

#[tokio::test]
async fn when_form_and_record_disagree_on_the_side_the_forms_side_is_used_and_the_card_names_the_record() {
    // The form says left; the record holds a right-leg duplex on order.
    let base = vignette_request("dvt-likely-with-cancer-on-record");
    let request = with(base.clone(), "serviceRequests", vec![duplex_order(&base, "39443-7", "active", 1)]);
    let body = answer(&spawn_app().await, &request).await;
    let dvt = card(&body, "dvt-suspected");
    assert!(dvt["summary"].as_str().expect("summary").contains("(left leg)"));
    let left: Vec<String> = suggestions(dvt).into_iter().flat_map(|(c, _)| c).collect();
    assert!(left.contains(&"39432-0".to_owned()), "the left-leg duplex is still suggested: {left:?}");
    let detail = dvt["detail"].as_str().expect("detail");
    assert!(detail.contains("another leg") && detail.contains(&date(1)), "{detail}");
}

#[tokio::test]
async fn pattern_cards_beside_a_critical_red_flag_come_after_it_wait_for_it_and_suggest_no_physiotherapy() {
    let app = spawn_app().await;
    for (flag, topic, name) in [
        ("rf-saddle-bladder-bowel", "cauda-equina", "cauda equina syndrome"),
        ("rf-spreading-redness", "infection", "infection"),
        ("rf-cold-pale-foot", "limb-ischaemia", "threatened circulation"),
    ] {
        let request = yes(vignette_request("semimembranosus-tendinopathy"), &[flag]);
        let body = answer(&app, &request).await;
        let shown = topics(&body);
        let red = shown.iter().position(|t| t == topic).expect("the red flag");
        let tendon = shown.iter().position(|t| t == "hamstring-tendinopathy").expect("the pattern stays");
        assert!(red < tendon, "{flag}: {shown:?}");
        let pattern = card(&body, "hamstring-tendinopathy");
        let detail = pattern["detail"].as_str().expect("detail");
        assert!(detail.contains(&format!("Once {name} is excluded:")), "{flag}: {detail}");
        assert!(!detail.contains("10-14 day") && !detail.contains("Refer to physiotherapy"), "{flag}: {detail}");
        let codes: Vec<String> = suggested_resources(&body).iter().flat_map(|(_, r)| codes_of(r)).collect();
        assert!(!codes.contains(&"308447003".to_owned()), "{flag}: no physiotherapy referral: {codes:?}");
    }
}

#[tokio::test]
async fn with_a_pulsatile_lump_the_cyst_card_gives_no_aspiration_advice_and_no_knee_ultrasound() {
    let request = yes(vignette_request("baker-cyst-with-mechanical-symptoms"), &["pulsatile-lump"]);
    let body = answer(&spawn_app().await, &request).await;
    let cyst = card(&body, "baker-cyst");
    let text = text(cyst).to_lowercase();
    assert!(!text.contains("aspirat"), "{text}");
    assert!(text.contains("once a popliteal artery aneurysm"), "{text}");
    assert_eq!(suggests(cyst, &["241504009"]), None, "no knee ultrasound before the vascular ultrasound");
    let codes: Vec<String> = suggested_resources(&body).iter().flat_map(|(_, r)| codes_of(r)).collect();
    assert!(!codes.contains(&"241504009".to_owned()) && !codes.contains(&"308447003".to_owned()), "{codes:?}");
    assert_eq!(card(&body, "popliteal-aneurysm")["indicator"], "warning");
}

#[tokio::test]
async fn the_same_physiotherapy_referral_is_offered_once_across_the_tendon_and_nerve_cards() {
    let request =
        yes(vignette_request("semimembranosus-tendinopathy"), &["burning-tingling-numbness", "radiates-below-knee"]);
    let body = answer(&spawn_app().await, &request).await;
    assert!(topics(&body).contains(&"nerve-pain".to_owned()));
    let physiotherapy =
        suggested_resources(&body).iter().filter(|(_, r)| codes_of(r).contains(&"308447003".to_owned())).count();
    assert_eq!(physiotherapy, 1, "{body:#}");
}

#[tokio::test]
async fn record_entries_are_named_by_display_and_date_without_ids_or_doubled_dates() {
    let mut request = vignette_request("dvt-likely-with-cancer-on-record");
    request["prefetch"]["conditions"]["entry"][0]["resource"]["id"] = json!("c-rad");
    let body = answer(&spawn_app().await, &request).await;
    let dvt = card(&body, "dvt-suspected");
    let detail = dvt["detail"].as_str().expect("detail");
    assert!(!detail.contains("Condition/") && !detail.contains("c-rad"), "{detail}");
    assert!(detail.contains("Malignant neoplastic disease, "), "{detail}");
    let doubled = regex::Regex::new(r"\d{4}-\d{2}-\d{2}\)?[ ,]*\(?\d{4}-\d{2}-\d{2}").expect("regex");
    assert!(!doubled.is_match(detail), "{detail}");
    assert_eq!(dvt["extension"]["dev.popliteal.records"], json!(["Condition/c-rad"]), "the id stays in the extension");
}

#[tokio::test]
async fn every_pattern_card_says_what_should_bring_the_patient_back_at_once() {
    let app = spawn_app().await;
    for (vignette, topic, needles) in [
        ("radiating-nerve-pain-without-deficit", "nerve-pain", &["weakness", "saddle", "bladder or bowel"][..]),
        (
            "semimembranosus-tendinopathy",
            "hamstring-tendinopathy",
            &["calf swelling or pain", "fever", "hot, red knee"][..],
        ),
        ("baker-cyst-with-mechanical-symptoms", "baker-cyst", &["calf swelling or pain", "fever", "hot, red knee"][..]),
    ] {
        let body = answer(&app, &vignette_request(vignette)).await;
        let detail = card(&body, topic)["detail"].as_str().expect("detail").to_owned();
        for needle in needles {
            assert!(detail.contains(needle), "{topic} lacks {needle}: {detail}");
        }
    }
}

#[tokio::test]
async fn a_tendon_pattern_of_four_weeks_or_more_calls_for_imaging_and_an_evaluation_not_a_new_load_plan() {
    let request =
        answered(vignette_request("semimembranosus-tendinopathy"), "duration-weeks", json!({"valueInteger": 6}));
    let body = answer(&spawn_app().await, &request).await;
    let tendon = card(&body, "hamstring-tendinopathy");
    let text = text(tendon);
    assert!(!text.contains("10-14 day"), "{text}");
    assert!(text.contains("imaging") || text.contains("Imaging"), "{text}");
    assert!(text.contains("in-person evaluation"), "{text}");
    assert_eq!(suggests(tendon, &["241504009"]), Some(true), "imaging is now due");
    assert_eq!(suggests(tendon, &["308447003"]), None, "no new load plan");
}
