//! Shared by the test binaries: start the service on a free port, load the shared vignettes.
#![allow(dead_code)]

pub mod smart_ehr;
pub mod webdriver;

use std::path::{Path, PathBuf};

use popliteal::configuration::{Settings, configuration_directory};
use popliteal::startup::Application;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// Test settings (`config/test.toml`: port 0), adjusted by `adjust`.
pub fn test_settings(adjust: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings =
        Settings::load_for("test", &configuration_directory().expect("the config folder")).expect("test settings load");
    adjust(&mut settings);
    settings
}

/// Starts the service in the background and returns its address.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let settings = test_settings(adjust);
    let application = Application::build(&settings).expect("the application starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp { address, client: reqwest::Client::new() }
}

/// An EHR registered with the intake app (`[[intake.clients]]`): its FHIR base URL and the
/// client id it gave the app.
pub fn intake_client(issuer: &str, client_id: &str) -> popliteal::configuration::IntakeClient {
    serde_json::from_value(serde_json::json!({ "issuer": issuer, "client_id": client_id })).expect("an intake client")
}

/// The `[cors]` section as shipped for `environment` (`local`, `test`, `production`).
pub fn shipped_cors(environment: &str) -> popliteal::configuration::CorsSettings {
    let variables =
        [("POPLITEAL__AUDIT__PATIENT_HASH_KEY".to_owned(), "a-test-key-of-at-least-32-characters!!".to_owned())];
    Settings::load_with_variables(
        environment,
        &configuration_directory().expect("the config folder"),
        Some(variables.into_iter().collect()),
    )
    .expect("the shipped settings load")
    .cors
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.post_raw(path, serde_json::to_vec(body).expect("serialisable")).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the request is sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).send().await.expect("the request is sent")
    }

    /// Posts a hook request and returns its cards, once the answer is a 200 that keeps every
    /// rule of the protocol (`protocol_problems`).
    pub async fn cards(&self, path: &str, request: &serde_json::Value) -> serde_json::Value {
        let response = self.post_json(path, request).await;
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON");
        let problems = protocol_problems(&body, request["context"]["patientId"].as_str().expect("a patient id"));
        assert!(problems.is_empty(), "{problems:#?}");
        body
    }
}

/// The request with a prefetch key replaced by a searchset Bundle of these resources.
pub fn with_bundle(mut request: serde_json::Value, key: &str, resources: Vec<serde_json::Value>) -> serde_json::Value {
    request["prefetch"][key] = serde_json::json!({"resourceType": "Bundle", "type": "searchset",
        "entry": resources.into_iter().map(|r| serde_json::json!({"resource": r})).collect::<Vec<_>>()});
    request
}

/// The date `days_ago` days before today (UTC), as FHIR writes a date.
pub fn date_days_ago(days_ago: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::days(days_ago)).date().to_string()
}

/// `../shared/vignettes`, beside the repository.
pub fn vignettes_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vignettes")
}

/// Replaces `{{today-Nd}}` (a date N days ago) and `{{now-Nh}}` (an instant N hours ago) as
/// the vignettes' README says, relative to `now`.
pub fn substitute_dates(text: &str, now: time::OffsetDateTime) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let token = &after[..end];
        let replaced = if let Some(days) = token.strip_prefix("today-").and_then(|t| t.strip_suffix('d')) {
            let days: i64 = days.parse().expect("a day count");
            Some((now - time::Duration::days(days)).date().to_string())
        } else if let Some(hours) = token.strip_prefix("now-").and_then(|t| t.strip_suffix('h')) {
            let hours: i64 = hours.parse().expect("an hour count");
            let instant = (now - time::Duration::hours(hours)).replace_nanosecond(0).expect("valid");
            Some(instant.format(&time::format_description::well_known::Rfc3339).expect("formats"))
        } else {
            None
        };
        match replaced {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A vignette: its name, the service it calls, the request (dates substituted) and the
/// expectations.
pub struct Vignette {
    pub name: String,
    pub service: String,
    pub request: serde_json::Value,
    pub expect: serde_json::Value,
}

/// The shared patient-view vignettes, those of `pending/` included (written for the revised
/// spec; once they pass they run on every run).
pub fn load_vignettes(now: time::OffsetDateTime) -> Vec<Vignette> {
    let mut vignettes = load_vignettes_from(&vignettes_directory(), now);
    vignettes.extend(load_vignettes_from(&vignettes_directory().join("pending"), now));
    vignettes
}

/// Our own vignettes in the same format (order hooks): `tests/vignettes/`, with a `service`.
pub fn load_order_vignettes(now: time::OffsetDateTime) -> Vec<Vignette> {
    load_vignettes_from(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vignettes"), now)
}

fn load_vignettes_from(directory: &Path, now: time::OffsetDateTime) -> Vec<Vignette> {
    let directory = directory.to_path_buf();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|e| panic!("the vignettes must be at {}: {e}", directory.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable vignette");
            let value: serde_json::Value =
                serde_json::from_str(&substitute_dates(&text, now)).expect("a vignette is JSON");
            Vignette {
                name: path.file_stem().expect("a file name").to_string_lossy().into_owned(),
                service: value["service"].as_str().unwrap_or("posterior-knee-pain").to_owned(),
                request: value["request"].clone(),
                expect: value["expect"].clone(),
            }
        })
        .collect()
}

/// Every ServiceRequest a response suggests, with the card topic that suggests it.
pub fn suggested_resources(response: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    for card in response["cards"].as_array().into_iter().flatten() {
        let topic = card["source"]["topic"]["code"].as_str().unwrap_or_default().to_owned();
        for suggestion in card["suggestions"].as_array().into_iter().flatten() {
            for action in suggestion["actions"].as_array().into_iter().flatten() {
                found.push((topic.clone(), action["resource"].clone()));
            }
        }
    }
    found
}

pub fn codes_of(resource: &serde_json::Value) -> Vec<String> {
    resource["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

/// The card topics whose cards carry the Wells extension.
pub const DVT_RISK_TOPICS: &[&str] = &["dvt-suspected", "baker-cyst-rupture", "pulmonary-embolism"];

/// The codes a suggestion may order (questionnaire contract).
pub const SUGGESTION_CODES: &[&str] =
    &["39420-5", "39432-0", "39443-7", "48065-7", "48066-5", "241504009", "241641004", "394451000119106", "308447003"];

fn rank(indicator: &str) -> u8 {
    match indicator {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

fn find_nulls_or_empties(value: &serde_json::Value, path: &str, problems: &mut Vec<String>) {
    match value {
        serde_json::Value::Null => problems.push(format!("{path} is null")),
        serde_json::Value::String(s) if s.is_empty() => problems.push(format!("{path} is an empty string")),
        serde_json::Value::Array(items) => {
            if items.is_empty() && path != "$.cards" {
                problems.push(format!("{path} is an empty array"));
            }
            for (i, item) in items.iter().enumerate() {
                find_nulls_or_empties(item, &format!("{path}[{i}]"), problems);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                find_nulls_or_empties(item, &format!("{path}.{key}"), problems);
            }
        }
        _ => {}
    }
}

/// What every CDS Hooks response of this service must satisfy, whatever the patient.
pub fn protocol_problems(response: &serde_json::Value, patient_id: &str) -> Vec<String> {
    let mut problems = Vec::new();
    find_nulls_or_empties(response, "$", &mut problems);
    let Some(cards) = response["cards"].as_array() else {
        return vec!["no cards array".into()];
    };
    let mut previous = u8::MAX;
    for card in cards {
        let topic = card["source"]["topic"]["code"].as_str().unwrap_or("?");
        let summary = card["summary"].as_str().unwrap_or_default();
        if summary.is_empty() || summary.chars().count() >= 140 {
            problems.push(format!("{topic}: summary must be 1-139 characters: {summary}"));
        }
        let indicator = card["indicator"].as_str().unwrap_or_default();
        if rank(indicator) == 0 {
            problems.push(format!("{topic}: bad indicator {indicator}"));
        }
        if rank(indicator) > previous {
            problems.push(format!("{topic}: cards are not most urgent first"));
        }
        previous = rank(indicator);
        if uuid::Uuid::parse_str(card["uuid"].as_str().unwrap_or_default()).is_err() {
            problems.push(format!("{topic}: card uuid"));
        }
        if card["source"]["topic"]["system"] != "https://popliteal.dev/CodeSystem/card-topic" {
            problems.push(format!("{topic}: topic system"));
        }
        if card["source"]["label"].as_str().is_none() {
            problems.push(format!("{topic}: source.label"));
        }
        let text = format!("{summary}\n{}", card["detail"].as_str().unwrap_or_default());
        if text.contains("[missing wording]") || text.contains('{') || text.contains('}') {
            problems.push(format!("{topic}: unfilled wording in {text}"));
        }
        if card["detail"].as_str().is_none_or(|d| !d.contains("**")) && topic != "data-unavailable" {
            problems.push(format!("{topic}: detail must say why and what to do"));
        }
        // A link inside detail (markdown, or a bare URL GitHub markdown makes one) would navigate
        // the EHR's own frame: references are `links`, each once, never the source's again.
        let detail = card["detail"].as_str().unwrap_or_default();
        if ["](", "http://", "https://", "www.", "<http"].iter().any(|link| detail.contains(link)) {
            problems.push(format!("{topic}: detail holds a link: {detail}"));
        }
        let urls: Vec<&str> =
            card["links"].as_array().into_iter().flatten().filter_map(|link| link["url"].as_str()).collect();
        if urls.iter().enumerate().any(|(i, url)| urls[..i].contains(url)) {
            problems.push(format!("{topic}: a link is repeated: {urls:?}"));
        }
        if let Some(source) = card["source"]["url"].as_str().filter(|source| urls.contains(source)) {
            problems.push(format!("{topic}: the source {source} is repeated as a link"));
        }
        if card["overrideReasons"].as_array().is_none_or(|r| r.iter().any(|c| c["display"].as_str().is_none())) {
            problems.push(format!("{topic}: overrideReasons need a display"));
        }
        let suggestions = card["suggestions"].as_array().cloned().unwrap_or_default();
        if suggestions.is_empty() != card.get("selectionBehavior").is_none() {
            problems.push(format!("{topic}: selectionBehavior must come with suggestions"));
        }
        for suggestion in &suggestions {
            if uuid::Uuid::parse_str(suggestion["uuid"].as_str().unwrap_or_default()).is_err() {
                problems.push(format!("{topic}: suggestion uuid"));
            }
        }
        if DVT_RISK_TOPICS.contains(&topic) && card["extension"]["dev.popliteal.wells"]["score"].as_i64().is_none() {
            problems.push(format!("{topic}: the Wells extension is missing"));
        }
    }
    for (topic, resource) in suggested_resources(response) {
        if let Err(error) = serde_json::from_value::<fhir_sdk::r4b::resources::ServiceRequest>(resource.clone()) {
            problems.push(format!("{topic}: suggestion is not a valid ServiceRequest: {error}"));
        }
        if resource["status"] != "draft" || resource["subject"]["reference"] != format!("Patient/{patient_id}") {
            problems.push(format!("{topic}: suggestion must be a draft for the patient"));
        }
        if resource["priority"].as_str().is_none() || resource["reasonCode"].as_array().is_none_or(Vec::is_empty) {
            problems.push(format!("{topic}: suggestion needs priority and reasonCode"));
        }
        if !codes_of(&resource).iter().any(|code| SUGGESTION_CODES.contains(&code.as_str())) {
            problems.push(format!("{topic}: suggestion code outside the verified list"));
        }
    }
    problems
}

fn topics_with(cards: &[serde_json::Value]) -> Vec<(String, String)> {
    cards
        .iter()
        .map(|c| {
            (
                c["source"]["topic"]["code"].as_str().unwrap_or_default().to_owned(),
                c["indicator"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// The expectation keys of ../shared/vignettes/README.md. A key the checker does not know fails
/// the vignette: a new kind of expectation can never pass unchecked.
const EXPECTATION_KEYS: &[&str] =
    &["status", "cards", "absent", "no_indicator", "first", "suggests", "not_suggests", "wells", "exact_empty", "text"];

/// The fields of one `text` rule.
const TEXT_RULE_KEYS: &[&str] = &["topic", "field", "pattern", "rule", "why"];

/// Checks the `text` wording rules: among the cards of a topic, the field (`summary`, `detail`,
/// or `card` for the whole card as JSON) must or must not match the pattern.
fn text_problems(rules: &serde_json::Value, cards: &[serde_json::Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(rules) = rules.as_array() else {
        return vec!["text must be a list of rules".into()];
    };
    for rule in rules {
        let Some(fields) = rule.as_object() else {
            problems.push(format!("a text rule must be an object: {rule}"));
            continue;
        };
        for key in fields.keys() {
            if !TEXT_RULE_KEYS.contains(&key.as_str()) {
                problems.push(format!("unknown key {key} in text rule {rule}"));
            }
        }
        let (Some(topic), Some(field), Some(pattern), Some(kind)) =
            (rule["topic"].as_str(), rule["field"].as_str(), rule["pattern"].as_str(), rule["rule"].as_str())
        else {
            problems.push(format!("a text rule needs topic, field, pattern and rule: {rule}"));
            continue;
        };
        let Ok(regex) = regex::Regex::new(pattern) else {
            problems.push(format!("text rule pattern {pattern:?} is not a regular expression"));
            continue;
        };
        let texts: Vec<String> = cards
            .iter()
            .filter(|card| card["source"]["topic"]["code"] == topic)
            .map(|card| match field {
                "summary" => card["summary"].as_str().unwrap_or_default().to_owned(),
                "detail" => card["detail"].as_str().unwrap_or_default().to_owned(),
                _ => card.to_string(),
            })
            .collect();
        if !matches!(field, "summary" | "detail" | "card") {
            problems.push(format!("text rule field {field:?} is not summary, detail or card"));
            continue;
        }
        let why = rule["why"].as_str().unwrap_or_default();
        match kind {
            "must" if texts.is_empty() => problems.push(format!("text rule on {topic}: no {topic} card ({why})")),
            "must" => {
                if let Some(text) = texts.iter().find(|text| !regex.is_match(text)) {
                    problems.push(format!("{topic} {field} must match {pattern:?} ({why}): {text}"));
                }
            }
            "mustnot" => {
                if let Some(text) = texts.iter().find(|text| regex.is_match(text)) {
                    problems.push(format!("{topic} {field} must not match {pattern:?} ({why}): {text}"));
                }
            }
            other => problems.push(format!("text rule kind {other:?} is neither must nor mustnot")),
        }
    }
    problems
}

/// Checks a response against a vignette's `expect` (see ../shared/vignettes/README.md).
pub fn expectation_problems(expect: &serde_json::Value, status: u16, response: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    for key in expect.as_object().into_iter().flat_map(|e| e.keys()) {
        if !EXPECTATION_KEYS.contains(&key.as_str()) {
            problems.push(format!("the checker does not understand the expectation {key}"));
        }
    }
    let wanted_status = expect["status"].as_u64().unwrap_or(200);
    if u64::from(status) != wanted_status {
        problems.push(format!("status {status}, expected {wanted_status}"));
        return problems;
    }
    if expect["exact_empty"] == true && *response != serde_json::json!({ "cards": [] }) {
        problems.push(format!("expected exactly {{\"cards\": []}}, got {response}"));
    }
    let cards = response["cards"].as_array().cloned().unwrap_or_default();
    let shown = topics_with(&cards);
    for (topic, allowed) in expect["cards"].as_object().into_iter().flatten() {
        let allowed = strings(allowed);
        if !shown.iter().any(|(t, i)| t == topic && allowed.contains(i)) {
            problems.push(format!("expected a {topic} card with indicator in {allowed:?}; got {shown:?}"));
        }
    }
    for topic in strings(&expect["absent"]) {
        if shown.iter().any(|(t, _)| *t == topic) {
            problems.push(format!("{topic} must be absent; got {shown:?}"));
        }
    }
    for indicator in strings(&expect["no_indicator"]) {
        if shown.iter().any(|(_, i)| *i == indicator) {
            problems.push(format!("no card may be {indicator}; got {shown:?}"));
        }
    }
    if let Some(first) = expect["first"].as_str()
        && shown.first().map(|(_, i)| i.as_str()) != Some(first)
    {
        problems.push(format!("the first card must be {first}; got {shown:?}"));
    }
    let suggested: Vec<String> = suggested_resources(response).iter().flat_map(|(_, r)| codes_of(r)).collect();
    for group in expect["suggests"].as_array().into_iter().flatten() {
        let group = strings(group);
        if !group.iter().any(|code| suggested.contains(code)) {
            problems.push(format!("expected a suggestion with one of {group:?}; suggested {suggested:?}"));
        }
    }
    for group in expect["not_suggests"].as_array().into_iter().flatten() {
        for code in strings(group) {
            if suggested.contains(&code) {
                problems.push(format!("{code} must not be suggested"));
            }
        }
    }
    if !expect["text"].is_null() {
        problems.extend(text_problems(&expect["text"], &cards));
    }
    if let Some(wells) = expect["wells"].as_object() {
        let matching = cards.iter().any(|card| {
            let topic = card["source"]["topic"]["code"].as_str().unwrap_or_default();
            let extension = &card["extension"]["dev.popliteal.wells"];
            DVT_RISK_TOPICS.contains(&topic) && wells.iter().all(|(field, value)| extension[field] == *value)
        });
        if !matching {
            problems.push(format!("no DVT-risk card has Wells {wells:?}"));
        }
    }
    problems
}

/// One vignette's request by name (dates substituted relative to now).
pub fn vignette_request(name: &str) -> serde_json::Value {
    load_vignettes(time::OffsetDateTime::now_utc())
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vignette {name}"))
        .request
}

/// The topics of a response's cards, in order.
pub fn topics(response: &serde_json::Value) -> Vec<String> {
    response["cards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["source"]["topic"]["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The card of a topic.
pub fn card<'a>(response: &'a serde_json::Value, topic: &str) -> &'a serde_json::Value {
    response["cards"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["source"]["topic"]["code"] == topic)
        .unwrap_or_else(|| panic!("no {topic} card in {response:#}"))
}

// ---------------------------------------------------------------------------------------------
// Databases for the feedback and audit tests: the same tests run against SQLite and PostgreSQL.

/// The database backends the feedback and audit tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests, `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::postgres_skipped() {
                    return;
                }
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL the tests use (a database in which they create one schema per test):
/// `POPLITEAL_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
pub fn postgres_admin_url() -> String {
    std::env::var("POPLITEAL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `POPLITEAL_TEST_POSTGRES=skip` skips the PostgreSQL variants (on a machine without it; CI never
/// sets it: `.ci/run` starts PostgreSQL).
pub fn postgres_skipped() -> bool {
    let skipped = std::env::var("POPLITEAL_TEST_POSTGRES").is_ok_and(|v| v == "skip");
    if skipped {
        eprintln!("POPLITEAL_TEST_POSTGRES=skip: PostgreSQL variant skipped");
    }
    skipped
}

fn with_query(url: &str, pair: &str) -> String {
    if url.contains('?') { format!("{url}&{pair}") } else { format!("{url}?{pair}") }
}

/// `url` with its database name replaced.
fn postgres_url_for_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a postgres URL names a database");
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

async fn postgres_admin(statement: String) {
    use sqlx::{Connection, Executor};
    let url = postgres_admin_url();
    let mut connection = sqlx::postgres::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must answer at {url} (.ci/run starts it): {e}"));
    connection.execute(sqlx::AssertSqlSafe(statement)).await.expect("the admin statement runs");
}

/// One test's database, removed when dropped: a temporary SQLite file, a fresh PostgreSQL schema,
/// or (for the unavailability tests) a place where a database does not exist yet.
pub struct TestDatabase {
    pub backend: Backend,
    /// What `database.url` is set to.
    pub url: String,
    /// For SQLite: the database file.
    pub path: Option<PathBuf>,
    directory: tempfile::TempDir,
    /// For PostgreSQL: the statement that removes what the test created.
    cleanup: Option<String>,
    /// For a missing database: the statement that creates it (PostgreSQL).
    create: Option<String>,
}

fn unique_name() -> String {
    format!("popliteal_t_{}", uuid::Uuid::new_v4().simple())
}

impl TestDatabase {
    /// A fresh, empty database.
    pub async fn new(backend: Backend) -> TestDatabase {
        let directory = tempfile::tempdir().expect("a temporary directory");
        match backend {
            Backend::Sqlite => {
                let path = directory.path().join("popliteal.db");
                TestDatabase::sqlite(path, directory)
            }
            Backend::Postgres => {
                let schema = unique_name();
                postgres_admin(format!("CREATE SCHEMA {schema}")).await;
                TestDatabase {
                    backend,
                    url: with_query(&postgres_admin_url(), &format!("options=-c%20search_path%3D{schema}")),
                    path: None,
                    directory,
                    cleanup: Some(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")),
                    create: None,
                }
            }
        }
    }

    /// A database that cannot be opened yet: SQLite a file whose place a folder takes (the
    /// service refuses to start when the file's own folder is missing: a mistake, not an outage),
    /// PostgreSQL a database that was never created. [`TestDatabase::bring_up`] makes it possible.
    pub async fn missing(backend: Backend) -> TestDatabase {
        let directory = tempfile::tempdir().expect("a temporary directory");
        match backend {
            Backend::Sqlite => {
                let path = directory.path().join("popliteal.db");
                std::fs::create_dir(&path).expect("a folder where the file should be");
                TestDatabase::sqlite(path, directory)
            }
            Backend::Postgres => {
                let name = unique_name();
                TestDatabase {
                    backend,
                    url: postgres_url_for_database(&postgres_admin_url(), &name),
                    path: None,
                    directory,
                    cleanup: Some(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                    create: Some(format!("CREATE DATABASE {name}")),
                }
            }
        }
    }

    /// The SQLite database at `path`, inside `directory` (removed with it).
    fn sqlite(path: PathBuf, directory: tempfile::TempDir) -> TestDatabase {
        TestDatabase {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}?mode=rwc", path.display()),
            path: Some(path),
            directory,
            cleanup: None,
            create: None,
        }
    }

    /// Makes the missing database possible (for SQLite: the folder in the file's place goes).
    pub async fn bring_up(&self) {
        match self.backend {
            Backend::Sqlite => {
                let path = self.path.as_ref().expect("a SQLite path");
                std::fs::remove_dir(path).expect("the folder in the file's place is removed");
            }
            Backend::Postgres => postgres_admin(self.create.clone().expect("a missing database")).await,
        }
    }

    pub fn settings(&self) -> popliteal::configuration::DatabaseSettings {
        popliteal::configuration::DatabaseSettings {
            url: secrecy::SecretString::from(self.url.clone()),
            max_connections: std::num::NonZeroU32::new(4).expect("positive"),
            timeout_ms: std::num::NonZeroU64::new(2000).expect("positive"),
            sslmode: None,
            ssl_root_cert: None,
            allow_insecure: false,
        }
    }

    /// A second handle on the same database, to read what the service stored.
    pub fn store(&self) -> popliteal::store::Store {
        popliteal::store::Store::connect(&self.settings()).expect("a usable URL")
    }

    /// The temporary directory of this test (SQLite files live in it).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(statement) = self.cleanup.take() else { return };
        // Drop cannot await: clean up on a thread of its own, bounded by a lock timeout.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                use sqlx::{Connection, Executor};
                if let Ok(mut connection) = sqlx::postgres::PgConnection::connect(&postgres_admin_url()).await {
                    let _ = connection.execute("SET lock_timeout = '5s'").await;
                    let _ = connection.execute(sqlx::AssertSqlSafe(statement)).await;
                }
            });
        })
        .join();
    }
}

/// A loopback port where nothing listens.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// A URL of the backend's kind that cannot be reached: a "SQLite file" that is a folder (the
/// temporary folder: SQLite cannot open it), or a PostgreSQL port where nothing listens.
pub fn unreachable_database_url(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", std::env::temp_dir().display()),
        Backend::Postgres => format!("postgres://postgres@127.0.0.1:{}/test", closed_port()),
    }
}

/// Starts the service on `database` (test settings, adjusted by `adjust`).
pub async fn spawn_app_on(database: &TestDatabase, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let url = database.url.clone();
    spawn_app_with(move |settings| {
        settings.database.url = secrecy::SecretString::from(url);
        settings.database.max_connections = std::num::NonZeroU32::new(4).expect("positive");
        adjust(settings);
    })
    .await
}

/// Starts the service with `settings` and keeps its audit queue, to read its counts.
pub async fn spawn_app_keeping_auditor(settings: Settings) -> (TestApp, popliteal::audit::Auditor) {
    let application = Application::build(&settings).expect("the application starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let auditor = application.auditor();
    tokio::spawn(application.run_until_stopped());
    (TestApp { address, client: reqwest::Client::new() }, auditor)
}

/// Polls `probe` every 50 ms until it gives a value, for at most `within`.
pub async fn eventually<T, F, Fut>(within: std::time::Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The audit records of a hookInstance, once the writer has stored them (at most 10 s).
pub async fn audited(store: &popliteal::store::Store, hook_instance: &str) -> Vec<popliteal::audit::AuditRecord> {
    eventually(std::time::Duration::from_secs(10), || async {
        store.invocations(hook_instance).await.ok().filter(|found| !found.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("no audit record for {hook_instance} within 10 s"))
}

/// A feedback body of one item.
pub fn feedback_item(card: &str, outcome: &str, timestamp: &str) -> serde_json::Value {
    serde_json::json!({ "card": card, "outcome": outcome, "outcomeTimestamp": timestamp })
}

/// Now, as RFC 3339 (to the microsecond: how feedback times are stored).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).expect("valid");
    now.format(&time::format_description::well_known::Rfc3339).expect("formats")
}

/// A TCP proxy on loopback in front of a server, that can be cut (every connection closed, new
/// ones closed at once) and restored: a database that goes away and comes back.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a proxy port");
        let port = listener.local_addr().expect("an address").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::<tokio::task::AbortHandle>::new()));
        let (flag, list) = (up.clone(), connections.clone());
        let listener = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                list.lock().expect("the list").push(task.abort_handle());
            }
        });
        Proxy { port, up, connections, listener }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().expect("the list").drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.listener.abort();
    }
}
