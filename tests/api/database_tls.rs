//! TLS to PostgreSQL (`database.sslmode`, `database.ssl_root_cert`) against the test PostgreSQL,
//! which `.ci/run` gives a certificate for `localhost` and 127.0.0.1 signed by a test CA
//! (`POPLITEAL_TEST_POSTGRES_TLS_CA`), and a second CA that signed nothing (`wrong-ca.pem` beside
//! it). Feedback is stored over a verified connection, and never in plaintext when the
//! certificate cannot be verified: the answer is then 503.

use std::path::PathBuf;

use popliteal::configuration::SslMode;
use secrecy::SecretString;
use serde_json::json;

use crate::support::{
    Backend, TestApp, TestDatabase, feedback_item, now_rfc3339, postgres_admin_url, postgres_skipped, spawn_app_with,
};

const FEEDBACK: &str = "/cds-services/posterior-knee-pain/feedback";
const SERVICE_ID: &str = "posterior-knee-pain";

/// The test CA, or `None` when the PostgreSQL tests are skipped. Unset otherwise: the test fails
/// saying how to set it.
fn test_ca() -> Option<PathBuf> {
    if postgres_skipped() {
        return None;
    }
    let Some(path) = std::env::var_os("POPLITEAL_TEST_POSTGRES_TLS_CA").filter(|path| !path.is_empty()) else {
        panic!(
            "POPLITEAL_TEST_POSTGRES_TLS_CA is not set: run `bash .ci/run`, which gives the test PostgreSQL TLS \
             with a test CA and sets it (or `POPLITEAL_CI_ONLY_POSTGRES=1 bash .ci/run`, then \
             `export POPLITEAL_TEST_POSTGRES_TLS_CA=~/.cache/popliteal/pg-tls/ca.pem`); \
             POPLITEAL_TEST_POSTGRES=skip skips the PostgreSQL tests"
        );
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "POPLITEAL_TEST_POSTGRES_TLS_CA {} is not a file: run `bash .ci/run`", path.display());
    Some(path)
}

/// The CA that signed nothing the server has, made beside the test CA by `.ci/run`.
fn wrong_ca(ca: &std::path::Path) -> PathBuf {
    let path = ca.with_file_name("wrong-ca.pem");
    assert!(path.is_file(), "{} is missing: run `bash .ci/run`", path.display());
    path
}

/// `url` with an `application_name` of its own, to find the service's connections on the server.
fn named(url: &str) -> (String, String) {
    let name = format!("popliteal_tls_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(url).expect("a URL");
    url.query_pairs_mut().append_pair("application_name", &name);
    (url.into(), name)
}

/// The service on `url` with these TLS settings.
async fn spawn_app_tls(url: &str, mode: SslMode, ca: Option<PathBuf>) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |settings| {
        settings.database.url = SecretString::from(url);
        settings.database.max_connections = std::num::NonZeroU32::new(4).expect("positive");
        settings.database.sslmode = Some(mode);
        settings.database.ssl_root_cert = ca;
    })
    .await
}

async fn post_one_item(app: &TestApp, card: &str) -> u16 {
    let body = json!({ "feedback": [feedback_item(card, "overridden", &now_rfc3339())] });
    app.post_json(FEEDBACK, &body).await.status().as_u16()
}

/// The connections with this `application_name`: how many, and how many of them are encrypted
/// (asked over a connection of the tests' own).
async fn connections_named(name: &str) -> (i64, i64) {
    use sqlx::Connection;
    let mut connection =
        sqlx::postgres::PgConnection::connect(&postgres_admin_url()).await.expect("the test PostgreSQL answers");
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = $1",
    )
    .bind(name)
    .fetch_one(&mut connection)
    .await
    .expect("pg_stat_ssl is readable")
}

/// The feedback stored in the test's schema, read over a connection of the tests' own.
async fn stored_cards(database: &TestDatabase) -> Vec<String> {
    let stored = database.store().feedback(SERVICE_ID).await.expect("readable");
    stored.into_iter().map(|item| item.card.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_stored_and_read_back_over_tls_with_verify_full_and_the_servers_ca() {
    let Some(ca) = test_ca() else { return };
    let database = TestDatabase::new(Backend::Postgres).await;
    let (url, name) = named(&database.url);
    let app = spawn_app_tls(&url, SslMode::VerifyFull, Some(ca.clone())).await;
    let card = uuid::Uuid::new_v4().to_string();
    assert_eq!(post_one_item(&app, &card).await, 200);

    // The service's own pool: every connection it holds is encrypted.
    let (connections, encrypted) = connections_named(&name).await;
    assert!(connections >= 1, "the service holds a connection");
    assert_eq!(encrypted, connections, "every connection of the service is TLS");

    // Read back through a store with the same settings, whose connection says it is TLS.
    let mut settings = database.settings();
    settings.url = SecretString::from(url);
    settings.sslmode = Some(SslMode::VerifyFull);
    settings.ssl_root_cert = Some(ca);
    let store = popliteal::store::Store::connect(&settings).expect("usable settings");
    assert!(store.encrypted().await.expect("the database answers"), "pg_stat_ssl says ssl for this connection");
    let stored = store.feedback(SERVICE_ID).await.expect("readable over TLS");
    assert_eq!(stored.iter().map(|item| item.card.to_string()).collect::<Vec<_>>(), [card]);
    // Without TLS settings, on loopback, the same store reads in plaintext (pg_hba allows it).
    assert!(!database.store().encrypted().await.expect("the database answers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_verify_full_and_a_ca_that_did_not_sign_the_servers_certificate_feedback_is_a_503_and_nothing_is_stored() {
    let Some(ca) = test_ca() else { return };
    let database = TestDatabase::new(Backend::Postgres).await;
    let (url, name) = named(&database.url);
    let app = spawn_app_tls(&url, SslMode::VerifyFull, Some(wrong_ca(&ca))).await;
    assert_eq!(post_one_item(&app, &uuid::Uuid::new_v4().to_string()).await, 503);
    assert_eq!(app.get("/ready").await.status().as_u16(), 503);
    assert_eq!(connections_named(&name).await.0, 0, "no session was opened, in plaintext or otherwise");
    assert!(stored_cards(&database).await.is_empty());
}

/// A TCP forwarder on 127.0.0.2 (loopback, but not in the server certificate) to the test
/// PostgreSQL, which listens on 127.0.0.1 only.
async fn forwarder_on_127_0_0_2() -> u16 {
    let admin = url::Url::parse(&postgres_admin_url()).expect("a URL");
    let upstream = format!("{}:{}", admin.host_str().expect("a host"), admin.port().unwrap_or(5432));
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("127.0.0.2 is loopback on Linux");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_verify_full_a_host_that_is_not_in_the_certificate_is_refused_and_verify_ca_accepts_it() {
    let Some(ca) = test_ca() else { return };
    let database = TestDatabase::new(Backend::Postgres).await;
    let port = forwarder_on_127_0_0_2().await;
    let mut url = url::Url::parse(&database.url).expect("a URL");
    url.set_host(Some("127.0.0.2")).expect("a host");
    url.set_port(Some(port)).expect("a port");
    let (url, name) = named(url.as_str());

    let full = spawn_app_tls(&url, SslMode::VerifyFull, Some(ca.clone())).await;
    assert_eq!(post_one_item(&full, &uuid::Uuid::new_v4().to_string()).await, 503);
    assert_eq!(connections_named(&name).await.0, 0);
    assert!(stored_cards(&database).await.is_empty());

    // The same server and CA, the name not checked: stored, over TLS. The refusal was the name.
    let ca_only = spawn_app_tls(&url, SslMode::VerifyCa, Some(ca)).await;
    let card = uuid::Uuid::new_v4().to_string();
    assert_eq!(post_one_item(&ca_only, &card).await, 200);
    let (connections, encrypted) = connections_named(&name).await;
    assert!(connections >= 1 && encrypted == connections, "{encrypted} of {connections} connections are TLS");
    assert_eq!(stored_cards(&database).await, [card]);
}
