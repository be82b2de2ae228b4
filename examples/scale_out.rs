//! The scale-out check (`scripts/scale-out.sh` runs it; CI calls that): HAProxy in front of
//! three replicas of the service sharing one PostgreSQL database, under load from many clients
//! each sending a freshly signed EHR token with every call. One replica is killed with SIGKILL in
//! the middle and restarted on its own spool folder. Shown, and asserted (exit status 1 when one
//! fails):
//! - no hook call fails but those in flight to the killed replica (HAProxy retries a connection
//!   refused; a call the dead replica had already taken is lost with it, and its retry then
//!   carries a token the cluster has seen);
//! - every acknowledged feedback item is stored;
//! - a token accepted by one replica is refused by another;
//! - once the writers have caught up, every answered hook call has its audit record, and the
//!   audit rows exceed the answered calls by no more than the calls in flight at the kill.
//!
//! Usage: `scale_out --binary target/release/popliteal --haproxy /usr/sbin/haproxy
//!         --postgres postgres://postgres@127.0.0.1:5432/postgres [--seconds 20]`

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use p384::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, Row};

const ISS: &str = "https://ehr.scale-out.example";
const KID: &str = "scale-out-key";
const HOOK: &str = "/cds-services/posterior-knee-pain";
const FEEDBACK: &str = "/cds-services/posterior-knee-pain/feedback";
const CLIENTS: usize = 16;

struct Options {
    binary: PathBuf,
    haproxy: PathBuf,
    postgres: String,
    seconds: u64,
}

fn options() -> Result<Options, String> {
    let mut arguments = std::env::args().skip(1);
    let (mut binary, mut haproxy, mut postgres, mut seconds) = (None, None, None, 20);
    while let Some(flag) = arguments.next() {
        let value = arguments.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--binary" => binary = Some(PathBuf::from(value)),
            "--haproxy" => haproxy = Some(PathBuf::from(value)),
            "--postgres" => postgres = Some(value),
            "--seconds" => seconds = value.parse().map_err(|_| "--seconds takes a number")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Options {
        binary: binary.ok_or("--binary is required")?,
        haproxy: haproxy.ok_or("--haproxy is required")?,
        postgres: postgres.ok_or("--postgres is required")?,
        seconds,
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

struct Signer {
    key: EncodingKey,
}

impl Signer {
    fn new() -> Signer {
        let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret.to_pkcs8_der().expect("a PKCS#8 key");
        Signer { key: EncodingKey::from_ec_der(der.as_bytes()) }
    }

    fn jwks(&self) -> Value {
        let jwk = Jwk::from_encoding_key(&self.key, Algorithm::ES384).expect("a public JWK");
        let mut jwk = serde_json::to_value(jwk).expect("serialisable");
        jwk["kid"] = json!(KID);
        jwk["use"] = json!("sig");
        json!({ "keys": [jwk] })
    }

    /// A token for one call to `url`, as the CDS Hooks Sandbox shapes it.
    fn token(&self, url: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(KID.to_owned());
        let claims =
            json!({"iss": ISS, "aud": url, "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string()});
        jsonwebtoken::encode(&header, &claims, &self.key).expect("a signed token")
    }
}

/// One replica: the service binary on its port, its spool folder, the shared database.
struct Replica {
    name: &'static str,
    port: u16,
    spool: PathBuf,
    child: Option<Child>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        Cluster::kill(self);
    }
}

/// HAProxy, stopped when dropped (a failed assertion included).
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cluster {
    binary: PathBuf,
    database_url: String,
    jwks_file: PathBuf,
    public_url: String,
}

impl Cluster {
    fn start(&self, replica: &mut Replica) {
        let child = Command::new(&self.binary)
            .env("APP_ENVIRONMENT", "production")
            .env("POPLITEAL__SERVER__HOST", "127.0.0.1")
            .env("POPLITEAL__SERVER__PORT", replica.port.to_string())
            .env("POPLITEAL__SERVER__PUBLIC_URL", &self.public_url)
            .env("POPLITEAL__DATABASE__URL", &self.database_url)
            .env("POPLITEAL__AUDIT__PATIENT_HASH_KEY", "scale-out-key-of-at-least-32-characters")
            .env("POPLITEAL__AUDIT__SPOOL_DIR", &replica.spool)
            .env("POPLITEAL__AUTH__ISSUERS", json!([{"iss": ISS, "jwks_file": self.jwks_file}]).to_string())
            .env("POPLITEAL__LIMITS__REQUESTS_PER_SECOND", "100000")
            .env("POPLITEAL__LIMITS__BURST", "100000")
            .env("POPLITEAL__LOG__LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("a replica starts");
        replica.child = Some(child);
    }

    fn kill(replica: &mut Replica) {
        if let Some(mut child) = replica.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_healthy(client: &reqwest::Client, port: u16) -> bool {
    for _ in 0..300 {
        if client.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn haproxy_config(port: u16, replicas: &[Replica]) -> String {
    let servers: String =
        replicas.iter().map(|r| format!("    server {} 127.0.0.1:{} check\n", r.name, r.port)).collect();
    format!(
        "global\n    maxconn 4096\n\ndefaults\n    mode http\n    timeout connect 500ms\n    timeout client 30s\n    \
         timeout server 30s\n    retries 3\n    option redispatch 1\n    retry-on conn-failure empty-response \
         response-timeout\n\nfrontend popliteal\n    bind 127.0.0.1:{port}\n    option http-buffer-request\n    \
         default_backend replicas\n\nbackend replicas\n    balance roundrobin\n    option httpchk GET /health\n    \
         default-server inter 300ms fall 2 rise 2\n{servers}"
    )
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// hookInstances answered 200.
    answered: Vec<String>,
    /// (when, status or 0 for a transport error) of every failed hook call.
    failed: Vec<(Instant, u16)>,
    /// Feedback card uuids acknowledged with 200.
    acknowledged: Vec<String>,
    feedback_failed: Vec<(Instant, u16)>,
}

async fn client_loop(
    client: reqwest::Client,
    base: String,
    public_url: String,
    signer: Arc<Signer>,
    request: Value,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let hook_instance = uuid::Uuid::new_v4().to_string();
        let mut body = request.clone();
        body["hookInstance"] = json!(hook_instance);
        let token = signer.token(&format!("{public_url}{HOOK}"));
        let sent = client.post(format!("{base}{HOOK}")).bearer_auth(token).json(&body).send().await;
        let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
        let card = match sent {
            Ok(response) if status == 200 => {
                let cards: Value = response.json().await.unwrap_or_default();
                seen.lock().expect("seen").answered.push(hook_instance);
                cards["cards"][0]["uuid"].as_str().map(str::to_owned)
            }
            _ => {
                seen.lock().expect("seen").failed.push((Instant::now(), status));
                None
            }
        };
        if let Some(card) = card.filter(|_| round.is_multiple_of(4)) {
            let item = json!({"card": card, "outcome": "overridden",
                "outcomeTimestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("a time")});
            let token = signer.token(&format!("{public_url}{FEEDBACK}"));
            let sent = client
                .post(format!("{base}{FEEDBACK}"))
                .bearer_auth(token)
                .json(&json!({"feedback": [item]}))
                .send()
                .await;
            let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
            let mut seen = seen.lock().expect("seen");
            if status == 200 {
                seen.acknowledged.push(card);
            } else {
                seen.feedback_failed.push((Instant::now(), status));
            }
        }
    }
}

fn patient_view_request() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-hooks/examples/patient-view-dvt-likely.json");
    let text = std::fs::read_to_string(path).expect("the example request");
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("a time");
    serde_json::from_str(&text.replace("{{now}}", &now)).expect("JSON")
}

async fn backlog(client: &reqwest::Client, port: u16) -> Option<u64> {
    let ready: Value = client.get(format!("http://127.0.0.1:{port}/ready")).send().await.ok()?.json().await.ok()?;
    ready["audit"]["backlog"]["records"].as_u64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("scale-out: {error}");
            return ExitCode::from(2);
        }
    };
    let mut failures: Vec<String> = Vec::new();
    let folder = tempfile::tempdir().expect("a folder");
    let database = format!("popliteal_scale_out_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&options.postgres).await.expect("PostgreSQL answers");
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).await.expect("a database");
    let database_url = {
        let mut url = url::Url::parse(&options.postgres).expect("a URL");
        url.set_path(&database);
        url.to_string()
    };

    let signer = Arc::new(Signer::new());
    let jwks_file = folder.path().join("jwks.json");
    std::fs::write(&jwks_file, signer.jwks().to_string()).expect("the key set is written");
    let proxy_port = free_port();
    let public_url = format!("http://127.0.0.1:{proxy_port}");
    let cluster = Cluster {
        binary: options.binary.clone(),
        database_url: database_url.clone(),
        jwks_file,
        public_url: public_url.clone(),
    };
    let mut replicas: Vec<Replica> = ["r1", "r2", "r3"]
        .into_iter()
        .map(|name| Replica { name, port: free_port(), spool: folder.path().join(name), child: None })
        .collect();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a client");
    for replica in &mut replicas {
        cluster.start(replica);
    }
    for replica in &replicas {
        assert!(wait_healthy(&client, replica.port).await, "replica {} did not start", replica.name);
    }
    let config = folder.path().join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(proxy_port, &replicas)).expect("haproxy.cfg is written");
    let _haproxy = Proxy(
        Command::new(&options.haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("HAProxy starts"),
    );
    assert!(wait_healthy(&client, proxy_port).await, "HAProxy did not answer");

    // The load, with a kill -9 and a restart of r2 in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let request = patient_view_request();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client_loop(
                client.clone(),
                public_url.clone(),
                public_url.clone(),
                signer.clone(),
                request.clone(),
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let run = Duration::from_secs(options.seconds);
    tokio::time::sleep(run / 3).await;
    let answered_before_kill = seen.lock().expect("seen").answered.len();
    Cluster::kill(&mut replicas[1]);
    let killed_at = Instant::now();
    tokio::time::sleep(run / 6).await;
    cluster.start(&mut replicas[1]);
    if !wait_healthy(&client, replicas[1].port).await {
        failures.push("the killed replica did not come back".into());
    }
    let restarted_at = Instant::now();
    tokio::time::sleep(run.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::SeqCst);
    for task in clients {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    let elapsed = started.elapsed();

    // A token accepted by one replica is refused by another.
    let token = signer.token(&format!("{public_url}/cds-services"));
    let first =
        client.get(format!("http://127.0.0.1:{}/cds-services", replicas[0].port)).bearer_auth(&token).send().await;
    let second =
        client.get(format!("http://127.0.0.1:{}/cds-services", replicas[2].port)).bearer_auth(&token).send().await;
    let (first, second) = (first.map_or(0, |r| r.status().as_u16()), second.map_or(0, |r| r.status().as_u16()));
    if (first, second) != (200, 401) {
        failures.push(format!("a token replayed to another replica: {first} then {second}, expected 200 then 401"));
    }

    // The writers catch up.
    let caught_up = async {
        loop {
            let mut total = 0;
            for replica in &replicas {
                total += backlog(&client, replica.port).await.unwrap_or(u64::MAX / 4);
            }
            if total == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), caught_up).await.is_err() {
        failures.push("the audit writers did not catch up within 60 s".into());
    }

    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    let mut connection = sqlx::PgConnection::connect(&database_url).await.expect("the database answers");
    let audited: HashSet<String> = sqlx::query("SELECT hook_instance FROM audit_invocation")
        .fetch_all(&mut connection)
        .await
        .expect("audit rows")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    let audit_rows: i64 =
        sqlx::query("SELECT count(*) FROM audit_invocation").fetch_one(&mut connection).await.expect("a count").get(0);
    let stored: HashSet<String> = sqlx::query("SELECT card_uuid FROM feedback")
        .fetch_all(&mut connection)
        .await
        .expect("feedback rows")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    let _ = connection.close().await;

    let unaudited = seen.answered.iter().filter(|h| !audited.contains(*h)).count();
    let lost_feedback = seen.acknowledged.iter().filter(|c| !stored.contains(*c)).count();
    // A failure counts against the kill if it came between the kill and a little after HAProxy
    // marked the replica down (two failed checks 300 ms apart) or it came back.
    let window = |at: &Instant| *at >= killed_at && *at <= restarted_at.max(killed_at + Duration::from_secs(2));
    let failed_outside = seen.failed.iter().filter(|(at, _)| !window(at)).count();
    let failed_at_kill = seen.failed.len() - failed_outside;
    let feedback_failed_outside = seen.feedback_failed.iter().filter(|(at, _)| !window(at)).count();
    println!(
        "scale-out: 3 replicas behind HAProxy on one PostgreSQL, {CLIENTS} clients for {:.1} s, r2 killed (SIGKILL) \
         after {answered_before_kill} answered calls and restarted {:.1} s later",
        elapsed.as_secs_f64(),
        restarted_at.duration_since(killed_at).as_secs_f64()
    );
    println!(
        "scale-out: hook calls answered {}, failed {} (at the kill: {failed_at_kill}; elsewhere: {failed_outside}); \
         audit rows {audit_rows}, answered calls without an audit record {unaudited}",
        seen.answered.len(),
        seen.failed.len()
    );
    println!(
        "scale-out: feedback acknowledged {}, stored {}, acknowledged but not stored {lost_feedback}, refused {} \
         (elsewhere than at the kill: {feedback_failed_outside}); replayed token: {first} then {second}",
        seen.acknowledged.len(),
        stored.len(),
        seen.feedback_failed.len()
    );
    if seen.answered.len() < 200 {
        failures.push(format!("too little load to show anything: {} calls answered", seen.answered.len()));
    }
    if failed_outside > 0 || feedback_failed_outside > 0 {
        failures.push(format!(
            "{failed_outside} hook calls and {feedback_failed_outside} feedback posts failed away from the kill"
        ));
    }
    if failed_at_kill > CLIENTS {
        failures
            .push(format!("{failed_at_kill} calls failed at the kill, more than the {CLIENTS} that can be in flight"));
    }
    if unaudited > 0 {
        failures.push(format!("{unaudited} answered hook calls have no audit record"));
    }
    let extra = audit_rows - seen.answered.len() as i64;
    if extra < 0 || extra > CLIENTS as i64 {
        failures.push(format!("audit rows {audit_rows} against {} answered calls", seen.answered.len()));
    }
    if lost_feedback > 0 {
        failures.push(format!("{lost_feedback} acknowledged feedback items are not stored"));
    }

    drop(_haproxy);
    drop(replicas);
    let _ = admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))).await;
    if failures.is_empty() {
        println!("scale-out: passed");
        ExitCode::SUCCESS
    } else {
        for failure in &failures {
            println!("scale-out: FAILED: {failure}");
        }
        ExitCode::FAILURE
    }
}
