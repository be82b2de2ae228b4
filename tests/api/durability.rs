//! Feedback that got a 200 is never lost: not when the process is killed with SIGKILL in the
//! middle of a burst, not when the database is unavailable at start or goes away mid-run (503
//! with an OperationOutcome meanwhile, 200 again once it is back). SQLite and PostgreSQL alike.
//! Loopback only; every loop is bounded in count and time.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::on_both_backends;
use crate::support::{
    Backend, Proxy, TestApp, TestDatabase, eventually, feedback_item, now_rfc3339, postgres_admin_url, spawn_app_on,
};

const FEEDBACK: &str = "/cds-services/posterior-knee-pain/feedback";
const SERVICE_ID: &str = "posterior-knee-pain";

/// A write lock on a SQLite database held by another connection (as another process would).
pub struct SqliteLock {
    connection: Option<sqlx::sqlite::SqliteConnection>,
}

impl SqliteLock {
    pub async fn take(database: &TestDatabase) -> SqliteLock {
        use sqlx::{Connection, Executor};
        let mut connection = sqlx::sqlite::SqliteConnection::connect(&database.url).await.expect("a connection");
        connection.execute("BEGIN EXCLUSIVE").await.expect("the write lock");
        SqliteLock { connection: Some(connection) }
    }

    pub async fn release(&mut self) {
        use sqlx::{Connection, Executor};
        if let Some(mut connection) = self.connection.take() {
            connection.execute("ROLLBACK").await.expect("released");
            let _ = connection.close().await;
        }
    }
}

/// The service binary as a child process, on a database URL, on a free port.
struct Service {
    child: Child,
    address: String,
}

impl Service {
    fn start(database_url: &str) -> Service {
        Service::start_spooling(database_url, None)
    }

    /// As `start`, with the audit spool in `spool` (else a temporary folder of its own).
    fn start_spooling(database_url: &str, spool: Option<&std::path::Path>) -> Service {
        let mut command = Command::new(env!("CARGO_BIN_EXE_popliteal"));
        if let Some(spool) = spool {
            command.env("POPLITEAL__AUDIT__SPOOL_DIR", spool);
        }
        let mut child = command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("APP_ENVIRONMENT", "test")
            .env("POPLITEAL__DATABASE__URL", database_url)
            .env("POPLITEAL__DATABASE__TIMEOUT_MS", "5000")
            .env("POPLITEAL__SERVER__PORT", "0")
            .env("POPLITEAL__LOG__LEVEL", "info")
            .env("POPLITEAL__LOG__FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the service binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads the port from the "popliteal listening" line, then keeps draining the pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("popliteal listening")
                    && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(port) = event["port"].as_u64()
                {
                    let _ = sender.send(port);
                }
            }
        });
        let port = receiver.recv_timeout(Duration::from_secs(30)).expect("the service says where it listens");
        Service { child, address: format!("http://127.0.0.1:{port}") }
    }

    fn app(&self) -> TestApp {
        TestApp { address: self.address.clone(), client: reqwest::Client::new() }
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Posts of two items each from `workers` tasks until `stop` is set or a worker has made
/// `max_posts` posts; the card uuids of every item acknowledged with 200, and the statuses seen.
struct Burst {
    acked: Arc<Mutex<Vec<String>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
    errors: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Burst {
    fn start(app: &TestApp, workers: usize, max_posts: usize) -> Burst {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..workers)
            .map(|_| {
                let (app, acked, statuses, errors, stop) =
                    (app.clone_app(), acked.clone(), statuses.clone(), errors.clone(), stop.clone());
                tokio::spawn(async move {
                    for _ in 0..max_posts {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let cards = [uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string()];
                        let items: Vec<_> =
                            cards.iter().map(|card| feedback_item(card, "overridden", &now_rfc3339())).collect();
                        let sent = app
                            .client
                            .post(format!("{}{FEEDBACK}", app.address))
                            .json(&json!({ "feedback": items }))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        match sent {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                statuses.lock().expect("statuses").push(status);
                                if status == 200 {
                                    acked.lock().expect("acked").extend(cards);
                                } else {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        Burst { acked, statuses, errors, stop, workers: handles }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked").len()
    }

    async fn finish(self) -> (Vec<String>, Vec<u16>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(15), worker).await;
        }
        let acked = self.acked.lock().expect("acked").clone();
        let statuses = self.statuses.lock().expect("statuses").clone();
        (acked, statuses, self.errors.load(Ordering::SeqCst))
    }
}

trait CloneApp {
    fn clone_app(&self) -> TestApp;
}

impl CloneApp for TestApp {
    fn clone_app(&self) -> TestApp {
        TestApp { address: self.address.clone(), client: self.client.clone() }
    }
}

/// Every acknowledged card is stored.
async fn assert_nothing_acknowledged_is_lost(database: &TestDatabase, acked: &[String]) -> usize {
    let stored: BTreeSet<String> =
        database.store().feedback(SERVICE_ID).await.expect("readable").iter().map(|f| f.card.to_string()).collect();
    let lost: Vec<&String> = acked.iter().filter(|card| !stored.contains(*card)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged items lost: {lost:?}", lost.len(), acked.len());
    stored.len()
}

async fn one_item(app: &TestApp) -> (reqwest::Response, String) {
    let card = uuid::Uuid::new_v4().to_string();
    let response =
        app.post_json(FEEDBACK, &json!({ "feedback": [feedback_item(&card, "overridden", &now_rfc3339())] })).await;
    (response, card)
}

async fn assert_unavailable(response: reqwest::Response) {
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("application/fhir+json"));
    let body: serde_json::Value = response.json().await.expect("an OperationOutcome");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "transient");
}

async fn every_acknowledged_item_survives_a_kill_9_in_the_middle_of_a_burst(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let mut service = Service::start(&database.url);
    let app = service.app();
    let ready = eventually(Duration::from_secs(10), || async {
        let (response, _) = one_item(&app).await;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the service stores feedback");

    let burst = Burst::start(&app, 8, 2_000);
    let started = Instant::now();
    while burst.acked_count() < 400 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked_before_kill = burst.acked_count();
    service.kill();
    let elapsed = started.elapsed();
    let (acked, statuses, errors) = burst.finish().await;
    assert!(acked_before_kill >= 100, "a burst worth the name: {acked_before_kill} items in {elapsed:?}");
    assert!(statuses.iter().all(|s| *s == 200), "before the kill every post is stored: {statuses:?}");
    assert!(errors > 0, "posts were in flight when the process died");

    // Restart on the same database: it opens (SQLite recovers its WAL) and serves.
    let restarted = Service::start(&database.url);
    let again = eventually(Duration::from_secs(10), || async {
        let (response, card) = one_item(&restarted.app()).await;
        (response.status().as_u16() == 200).then_some(card)
    })
    .await
    .expect("the restarted service stores feedback");
    let stored = assert_nothing_acknowledged_is_lost(&database, &acked).await;
    eprintln!(
        "{backend:?}: {} items acknowledged in {elapsed:?} before SIGKILL ({:.0} items/s, 8 clients, 2 items a post); \
         {errors} posts in flight; {stored} stored after restart, none lost",
        acked.len(),
        acked.len() as f64 / elapsed.as_secs_f64()
    );
    assert!(database.store().feedback(SERVICE_ID).await.expect("readable").iter().any(|f| f.card.to_string() == again));
}

async fn feedback_is_a_503_while_the_database_is_missing_at_start_and_is_stored_once_it_exists(backend: Backend) {
    let database = TestDatabase::missing(backend).await;
    let app =
        spawn_app_on(&database, |s| s.database.timeout_ms = std::num::NonZeroU64::new(500).expect("positive")).await;
    let (response, _) = one_item(&app).await;
    assert_unavailable(response).await;
    assert_unavailable(app.get(&format!("{FEEDBACK}/summary")).await).await;
    // Hook calls are answered meanwhile.
    let request = crate::support::vignette_request("baker-cyst-with-mechanical-symptoms");
    assert_eq!(app.post_json("/cds-services/posterior-knee-pain", &request).await.status().as_u16(), 200);

    database.bring_up().await;
    let card = eventually(Duration::from_secs(15), || async {
        let (response, card) = one_item(&app).await;
        (response.status().as_u16() == 200).then_some(card)
    })
    .await
    .expect("feedback is stored once the database exists");
    assert_nothing_acknowledged_is_lost(&database, &[card]).await;
    assert_eq!(app.get(&format!("{FEEDBACK}/summary")).await.status().as_u16(), 200);
}

/// `url` with its host and port replaced by the proxy's.
fn through_proxy(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database in the URL");
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}127.0.0.1:{port}/{path}")
}

fn postgres_address() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = postgres_admin_url();
    let rest = url.split_once("://").expect("a URL").1;
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    host_port.to_socket_addrs().expect("resolves").next().expect("an address")
}

async fn feedback_is_a_503_while_the_database_goes_away_mid_run_and_nothing_acknowledged_is_lost(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let proxy = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(Proxy::start(postgres_address()).await),
    };
    let url = proxy.as_ref().map_or(database.url.clone(), |p| through_proxy(&database.url, p.port));
    let app = spawn_app_on(&database, move |s| {
        s.database.url = secrecy::SecretString::from(url);
        s.database.timeout_ms = std::num::NonZeroU64::new(500).expect("positive");
    })
    .await;
    let (response, first) = one_item(&app).await;
    assert_eq!(response.status().as_u16(), 200);

    let burst = Burst::start(&app, 4, 1_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The database goes away: SQLite held locked by another process, PostgreSQL's connections cut.
    let mut lock = match backend {
        Backend::Sqlite => Some(SqliteLock::take(&database).await),
        Backend::Postgres => {
            proxy.as_ref().expect("a proxy").cut();
            None
        }
    };
    let (response, _) = one_item(&app).await;
    assert_unavailable(response).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match lock.as_mut() {
        Some(lock) => lock.release().await,
        None => proxy.as_ref().expect("a proxy").restore(),
    }
    let back = eventually(Duration::from_secs(15), || async {
        let (response, card) = one_item(&app).await;
        (response.status().as_u16() == 200).then_some(card)
    })
    .await
    .expect("feedback is stored again once the database is back");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut acked, statuses, errors) = burst.finish().await;
    assert_eq!(errors, 0, "the service itself never failed");
    assert!(statuses.contains(&503), "the burst saw the outage: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "only 200 or 503: {statuses:?}");
    acked.extend([first, back]);
    let stored = assert_nothing_acknowledged_is_lost(&database, &acked).await;
    eprintln!(
        "{backend:?}: outage mid-run: {} posts answered 200, {} answered 503; {} items acknowledged, {stored} stored",
        statuses.iter().filter(|s| **s == 200).count(),
        statuses.iter().filter(|s| **s == 503).count(),
        acked.len()
    );
}

/// Two instances starting at once on a new database both set it up (SQLite has no migration lock).
async fn two_services_starting_at_once_on_a_new_database_both_set_it_up(backend: Backend) {
    for _ in 0..5 {
        let database = TestDatabase::new(backend).await;
        let (first, second, third) = (database.store(), database.store(), database.store());
        let (a, b, c) = tokio::join!(first.migrate(), second.migrate(), third.migrate());
        assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
        second.ping().await.expect("the schema is in place");
    }
}

on_both_backends!(
    two_services_starting_at_once_on_a_new_database_both_set_it_up,
    every_acknowledged_item_survives_a_kill_9_in_the_middle_of_a_burst,
    every_answered_hook_call_is_audited_after_a_database_outage_a_kill_9_and_a_restart,
    feedback_is_a_503_while_the_database_is_missing_at_start_and_is_stored_once_it_exists,
    feedback_is_a_503_while_the_database_goes_away_mid_run_and_nothing_acknowledged_is_lost,
);

/// Hook calls with unique hookInstances from `workers` tasks until one fails (the process died)
/// or `limit` passes: each answered call's hookInstance and when its 200 arrived.
async fn hook_burst(app: &TestApp, workers: usize, stop: Arc<AtomicBool>) -> Vec<(String, Instant)> {
    let request = crate::support::vignette_request("baker-cyst-with-mechanical-symptoms");
    let answered = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (app, answered, stop, request) = (app.clone_app(), answered.clone(), stop.clone(), request.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let hook_instance = uuid::Uuid::new_v4().to_string();
                    let mut request = request.clone();
                    request["hookInstance"] = json!(hook_instance);
                    let sent = app
                        .client
                        .post(format!("{}/cds-services/posterior-knee-pain", app.address))
                        .json(&request)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().as_u16() == 200 => {
                            answered.lock().expect("answered").push((hook_instance, Instant::now()));
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    answered.lock().expect("answered").clone()
}

async fn every_answered_hook_call_is_audited_after_a_database_outage_a_kill_9_and_a_restart(backend: Backend) {
    // The database is away for the whole first run: every record can only be in the spool.
    let database = TestDatabase::missing(backend).await;
    let spool = tempfile::tempdir().expect("a spool folder");
    let mut service = Service::start_spooling(&database.url, Some(spool.path()));
    let app = service.app();
    let stop = Arc::new(AtomicBool::new(false));
    let burst = tokio::spawn({
        let (app, stop) = (app.clone_app(), stop.clone());
        async move { hook_burst(&app, 8, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.kill();
    let killed_at = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let answered = burst.await.expect("the burst ends");
    assert!(answered.len() >= 50, "a burst worth the name: {} calls answered", answered.len());

    database.bring_up().await;
    let restarted = Service::start_spooling(&database.url, Some(spool.path()));
    let backlog = eventually(Duration::from_secs(30), || async {
        let ready: serde_json::Value = restarted.app().get("/ready").await.json().await.ok()?;
        (ready["audit"]["backlog"]["records"] == 0).then_some(ready["audit"].clone())
    })
    .await
    .expect("the restarted service writes the spool to the database and is ready");
    assert_eq!(backlog["lost"], 0, "{backlog}");

    let store = database.store();
    let (mut missing, mut missing_in_last_interval) = (Vec::new(), 0);
    for (hook_instance, at) in &answered {
        if store.invocations(hook_instance).await.expect("readable").is_empty() {
            if killed_at.duration_since(*at) < popliteal::audit::spool::SYNC_INTERVAL {
                missing_in_last_interval += 1;
            } else {
                missing.push(hook_instance.clone());
            }
        }
    }
    assert!(missing.is_empty(), "{} answered calls have no audit record: {missing:?}", missing.len());
    eprintln!(
        "{backend:?}: {} hook calls answered with the database away, SIGKILL, restart: {} audited from the spool, \
         {missing_in_last_interval} missing from the last {:?} before the kill",
        answered.len(),
        answered.len() - missing_in_last_interval,
        popliteal::audit::spool::SYNC_INTERVAL
    );
}
