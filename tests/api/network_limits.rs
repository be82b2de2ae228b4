//! A hostile network: bodies that trickle, stall or promise more than they send, one address
//! opening connection after connection, headers too large. Each gets a bounded, clear answer
//! (an OperationOutcome where HTTP allows one), and the service keeps answering everyone else.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{TestApp, spawn_app_with};

const HOOK: &str = "/cds-services/posterior-knee-pain";

fn socket_address(app: &TestApp) -> SocketAddr {
    app.address.trim_start_matches("http://").parse().expect("a socket address")
}

/// A connection to the service from `from` (any 127.0.0.0/8 address is this machine's).
async fn connect_from(app: &TestApp, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    let local: IpAddr = from.parse().expect("an address");
    socket.bind(SocketAddr::new(local, 0)).expect("bound");
    socket.connect(socket_address(app)).await.expect("connected")
}

/// What the service sent until it closed the connection (or `within` passed): its status and
/// body, and whether it closed.
async fn read_answer(stream: &mut TcpStream, within: Duration) -> (Option<u16>, String, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    };
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok());
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body, closed)
}

fn post_head(content_length: u64) -> String {
    format!(
        "POST {HOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

async fn app_with_body_deadlines(total_ms: u64, idle_ms: u64) -> TestApp {
    spawn_app_with(|settings| {
        settings.server.body_read_timeout_ms = std::num::NonZeroU64::new(total_ms).expect("positive");
        settings.server.body_idle_timeout_ms = std::num::NonZeroU64::new(idle_ms).expect("positive");
    })
    .await
}

#[tokio::test]
async fn a_body_that_trickles_past_its_deadline_gets_a_408_operation_outcome_and_the_connection_closed() {
    let app = app_with_body_deadlines(1000, 800).await;
    let mut stream = connect_from(&app, "127.0.0.1").await;
    stream.write_all(post_head(10_000).as_bytes()).await.expect("head sent");
    let started = Instant::now();
    // A byte every 100 ms: never idle for long, never finished.
    let trickle = async {
        for _ in 0..100 {
            if stream.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let (status, body, closed) = read_answer(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status, Some(408), "{body}");
    assert!(body.contains("\"OperationOutcome\"") && body.contains("\"timeout\""), "{body}");
    assert!(closed, "the connection is closed after the 408");
    assert!(started.elapsed() < Duration::from_secs(8), "answered after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_body_that_stalls_gets_a_408_once_the_idle_deadline_passes() {
    let app = app_with_body_deadlines(20_000, 500).await;
    let mut stream = connect_from(&app, "127.0.0.1").await;
    stream.write_all(post_head(100).as_bytes()).await.expect("head sent");
    stream.write_all(b"{\"hook\":").await.expect("a first chunk");
    let started = Instant::now();
    let (status, body, closed) = read_answer(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(status, Some(408), "{body}");
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the idle deadline, not the total one: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_at_once_with_a_413() {
    let app = app_with_body_deadlines(10_000, 5_000).await;
    let mut stream = connect_from(&app, "127.0.0.1").await;
    stream.write_all(post_head(10_000_000_000).as_bytes()).await.expect("head sent");
    stream.write_all(b"{").await.expect("one byte");
    let (status, body, closed) = read_answer(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(status, Some(413), "answered before the body deadline: {body}");
    assert!(body.contains("\"OperationOutcome\"") && body.contains("too-costly"), "{body}");
    assert!(closed);
}

#[tokio::test]
async fn headers_over_the_limit_get_a_431_operation_outcome() {
    let app = spawn_app_with(|settings| {
        settings.server.max_header_bytes = std::num::NonZeroUsize::new(16 * 1024).expect("positive")
    })
    .await;
    let response = app
        .client
        .get(format!("{}/cds-services", app.address))
        .header("authorization", format!("Bearer {}", "a".repeat(100 * 1024)))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 431);
    assert!(response.headers()["content-type"].to_str().expect("text").starts_with("application/fhir+json"));
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "too-costly");
}

/// How long `GET /health` takes from 127.0.0.1, the best of `tries`.
async fn fastest_health(app: &TestApp, tries: usize) -> Duration {
    let mut fastest = Duration::MAX;
    for _ in 0..tries {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a client");
        let started = Instant::now();
        let response = client.get(format!("{}/health", app.address)).send().await.expect("health answers");
        assert_eq!(response.status().as_u16(), 200);
        fastest = fastest.min(started.elapsed());
    }
    fastest
}

#[tokio::test]
async fn one_address_holds_no_more_connections_than_its_share_and_health_still_answers_at_once() {
    const SHARE: usize = 24;
    let app = spawn_app_with(|settings| {
        settings.server.max_connections_per_address = std::num::NonZeroUsize::new(SHARE).expect("positive");
        settings.server.body_read_timeout_ms = std::num::NonZeroU64::new(60_000).expect("positive");
        settings.server.body_idle_timeout_ms = std::num::NonZeroU64::new(60_000).expect("positive");
    })
    .await;
    // One address opens twice its share, each connection a body that never comes.
    let mut connections = Vec::new();
    for _ in 0..SHARE * 2 {
        let mut stream = connect_from(&app, "127.0.0.2").await;
        let _ = stream.write_all(post_head(1_000).as_bytes()).await;
        connections.push(stream);
    }
    let mut held = 0;
    let mut closed = 0;
    for stream in &mut connections {
        let (_, _, was_closed) = read_answer(stream, Duration::from_millis(300)).await;
        if was_closed { closed += 1 } else { held += 1 }
    }
    assert_eq!((held, closed), (SHARE, SHARE), "the address holds exactly its share");
    let fastest = fastest_health(&app, 5).await;
    assert!(fastest < Duration::from_millis(100), "GET /health took {fastest:?} at best");
    // A place comes back when one of its connections closes.
    connections.truncate(SHARE - 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(&app, "127.0.0.2").await;
    again.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("sent");
    let (status, _, _) = read_answer(&mut again, Duration::from_secs(3)).await;
    assert_eq!(status, Some(200));
}
