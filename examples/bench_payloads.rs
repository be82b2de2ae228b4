//! Writes the benchmark payloads (`bench/run.sh` calls this), or measures the parsing floor:
//! `bench_payloads write DIR` | `bench_payloads parse-floor FILE SECONDS THREADS [value|ignored]`.

#[path = "../bench/payloads.rs"]
mod payloads;

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => {
            let directory = std::path::Path::new(args.get(2).map_or("bench/out", String::as_str));
            std::fs::create_dir_all(directory).expect("output folder");
            let now = time::OffsetDateTime::now_utc();
            for (name, request) in [("large", payloads::large_request(now)), ("small", payloads::small_request(now))] {
                let body = serde_json::to_vec(&request).expect("serialise");
                let resources: usize = request["prefetch"]
                    .as_object()
                    .expect("prefetch")
                    .values()
                    .map(|v| v["entry"].as_array().map_or(1, Vec::len))
                    .sum();
                std::fs::write(directory.join(format!("{name}.json")), &body).expect("write");
                println!("{name}: {} bytes, {resources} resources", body.len());
            }
        }
        Some("parse-floor") => {
            let body = std::fs::read(&args[2]).expect("payload");
            let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
            let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
            // `ignored`: only tokenise the JSON (the absolute floor); default: build a Value.
            let tokenize_only = args.get(5).is_some_and(|mode| mode == "ignored");
            let started = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let body = body.clone();
                    std::thread::spawn(move || {
                        let mut parsed = 0u64;
                        let until = Instant::now() + Duration::from_secs(seconds);
                        while Instant::now() < until {
                            if tokenize_only {
                                let value: serde::de::IgnoredAny = serde_json::from_slice(&body).expect("JSON");
                                std::hint::black_box(value);
                            } else {
                                let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                                std::hint::black_box(value);
                            }
                            parsed += 1;
                        }
                        parsed
                    })
                })
                .collect();
            let total: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
            println!("{:.0}", total as f64 / started.elapsed().as_secs_f64());
        }
        Some("evaluate") => {
            // For profilers (callgrind): the whole evaluation of a body, N times, no HTTP.
            let body = std::fs::read(&args[2]).expect("payload");
            let times: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
            let settings = popliteal::configuration::Settings::load_for(
                "test",
                &popliteal::configuration::configuration_directory()
                    .expect("run from the crate folder, or set APP_CONFIG_DIR"),
            )
            .expect("settings");
            let knowledge = popliteal::evaluate::Knowledge::embedded().expect("knowledge");
            let evaluation = popliteal::evaluate::EvaluationSettings::from_settings(&settings);
            let now = time::OffsetDateTime::now_utc();
            let started = Instant::now();
            for _ in 0..times {
                let request = popliteal::protocol::request::HookRequest::parse(&body).expect("valid");
                let record = popliteal::fhir::assembly::from_prefetch_alone(&request.prefetch);
                let outcome = popliteal::evaluate::evaluate(
                    popliteal::catalogue::ServiceKind::PatientView,
                    &request,
                    &record,
                    &knowledge,
                    &evaluation,
                    now,
                )
                .expect("cards");
                let response =
                    serde_json::to_vec(&popliteal::protocol::card::CdsResponse { cards: outcome.cards }).expect("JSON");
                std::hint::black_box(response);
            }
            println!("{:.1} µs per evaluation", started.elapsed().as_secs_f64() * 1e6 / times as f64);
        }
        _ => eprintln!("usage: bench_payloads write DIR | parse-floor FILE SECONDS THREADS [value|ignored]"),
    }
}
