//! Criterion: the rules alone (target: under 50 µs per patient), the whole evaluation of a
//! request body (parse, record, rules, cards), and the parsing floor (serde_json only).

#[path = "../bench/payloads.rs"]
mod payloads;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use popliteal::catalogue::ServiceKind;
use popliteal::configuration::{Settings, configuration_directory};
use popliteal::evaluate::{EvaluationSettings, Knowledge, evaluate};
use popliteal::fhir::assembly;
use popliteal::fhir::intake::{self, IntakePolicy};
use popliteal::fhir::interpret;
use popliteal::knee::facts::Situation;
use popliteal::protocol::request::HookRequest;

fn bench(c: &mut Criterion) {
    c.bench_function("start/load the knowledge (value sets, thresholds, wording)", |b| {
        b.iter(|| Knowledge::embedded().expect("knowledge"))
    });
    let now = time::OffsetDateTime::now_utc();
    let settings =
        Settings::load_for("test", &configuration_directory().expect("the config folder")).expect("settings");
    let knowledge = Knowledge::embedded().expect("knowledge");
    let evaluation = EvaluationSettings::from_settings(&settings);
    for (name, request) in [("large", payloads::large_request(now)), ("small", payloads::small_request(now))] {
        let body = serde_json::to_vec(&request).expect("serialise");
        let parsed = HookRequest::parse(&body).expect("valid request");
        let patient_id = parsed.context.patient_id.clone();
        let record = assembly::from_prefetch_alone(&parsed.prefetch);
        let policy = IntakePolicy {
            canonical: settings.questionnaire_canonical(),
            stale_after: time::Duration::days(i64::from(settings.questionnaire.stale_after_days.get())),
        };
        let (intake, _) = intake::select(&record.questionnaire_responses, &patient_id, &policy, now);
        let situation = Situation {
            now,
            age_years: Some(58),
            intake,
            record: interpret::record_facts(&record, &patient_id, &knowledge.terminology, &knowledge.thresholds, now),
        };
        c.bench_function(&format!("{name}/rules alone"), |b| {
            b.iter(|| popliteal::knee::assess(black_box(&situation), &knowledge.thresholds))
        });
        c.bench_function(&format!("{name}/record facts through the value sets"), |b| {
            b.iter(|| {
                interpret::record_facts(
                    black_box(&record),
                    &patient_id,
                    &knowledge.terminology,
                    &knowledge.thresholds,
                    now,
                )
            })
        });
        c.bench_function(&format!("{name}/request body to cards"), |b| {
            b.iter(|| {
                let request = HookRequest::parse(black_box(&body)).expect("valid");
                let record = assembly::from_prefetch_alone(&request.prefetch);
                evaluate(ServiceKind::PatientView, &request, &record, &knowledge, &evaluation, now).expect("cards")
            })
        });
        c.bench_function(&format!("{name}/serde_json parse only"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("JSON"))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
