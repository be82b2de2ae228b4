//! EHR authentication with real signed tokens: ES384 and RS384 keys made here, their public JWKs
//! served by a loopback HTTP server (rotated mid-test), the service in `jwt` mode with the
//! production environment, and one fixed 401 for every refused token.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p384::pkcs8::EncodePrivateKey;
use popliteal::auth::{Authenticator, Reason};
use popliteal::configuration::{AuthMode, Environment, HttpUrl, KeySetUrl, Settings, TrustedIssuer};
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app_with, test_settings, vignette_request};

const SERVICE: &str = "/cds-services/posterior-knee-pain";
const DISCOVERY: &str = "/cds-services";
/// What EHRs call (a proxy in front of the service): the `aud` of every token.
const PUBLIC_URL: &str = "https://cds.example.org";
const ISS: &str = "https://ehr.example.org";

// ---------------------------------------------------------------------------------------------
// Keys and tokens

/// A private key, its `kid`, and its public JWK.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

fn es384(kid: &str) -> Signer {
    let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
    let der = secret.to_pkcs8_der().expect("a PKCS#8 key");
    Signer { kid: kid.to_owned(), alg: Algorithm::ES384, key: EncodingKey::from_ec_der(der.as_bytes()) }
}

/// RSA key generation is slow in a debug build: one 2048-bit key per test binary.
fn rs384(kid: &str) -> Signer {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    let der = DER.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("an RSA key");
        key.to_pkcs1_der().expect("a PKCS#1 key").as_bytes().to_vec()
    });
    Signer { kid: kid.to_owned(), alg: Algorithm::RS384, key: EncodingKey::from_rsa_der(der) }
}

impl Signer {
    fn jwk(&self) -> Value {
        let jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("a public JWK");
        let mut jwk = serde_json::to_value(jwk).expect("serialisable");
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }

    fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.key).expect("a signed token")
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The claims of a good token for a call to `path`: five minutes, a fresh `jti`, and extra
/// claims the service must tolerate.
fn claims(path: &str) -> Value {
    let now = now();
    json!({
        "iss": ISS,
        "aud": format!("{PUBLIC_URL}{path}"),
        "exp": now + 300,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": "ehr-client-1",
        "nbf": now,
        "tenant": "north-hospital",
    })
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serialisable"))
}

// ---------------------------------------------------------------------------------------------
// A key set server on loopback

struct KeyServer {
    base: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    fn url(&self) -> String {
        format!("{}/jwks.json", self.base)
    }

    fn serve(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("not poisoned") = keys;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Serves `{"keys": [...]}` at `/jwks.json` and `/.well-known/jwks.json`, counting fetches.
async fn spawn_key_server(keys: Vec<Value>) -> KeyServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let base = format!("http://127.0.0.1:{}", listener.local_addr().expect("an address").port());
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let state = (keys.clone(), fetches.clone());
    let server = HttpServer::new(move || {
        let (keys, fetches) = state.clone();
        let serve = move || {
            let (keys, fetches) = (keys.clone(), fetches.clone());
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let keys = keys.lock().expect("not poisoned").clone();
                HttpResponse::Ok().json(json!({ "keys": keys }))
            }
        };
        App::new()
            .route("/jwks.json", web::get().to(serve.clone()))
            .route("/.well-known/jwks.json", web::get().to(serve))
    })
    .workers(1)
    .listen(listener)
    .expect("listening")
    .run();
    tokio::spawn(server);
    KeyServer { base, keys, fetches }
}

fn key_set_url(url: String) -> KeySetUrl {
    KeySetUrl::try_from(url).expect("a key set URL")
}

fn trusted(iss: &str, jwks_url: Option<String>, jku_allowlist: Vec<String>) -> TrustedIssuer {
    TrustedIssuer {
        iss: iss.to_owned(),
        jwks_url: jwks_url.map(key_set_url),
        jwks_file: None,
        jku_allowlist: jku_allowlist.into_iter().map(key_set_url).collect(),
    }
}

/// The service with the production environment and `auth.mode = "jwt"`, trusting `issuers`.
async fn spawn_app_trusting(issuers: Vec<TrustedIssuer>, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|settings| {
        settings.environment = Environment::Production;
        settings.auth.mode = AuthMode::Jwt;
        settings.auth.issuers = issuers;
        settings.auth.jwks_refresh_min_interval_seconds = 0;
        settings.server.public_url = HttpUrl::try_from(PUBLIC_URL.to_owned()).expect("a URL");
        adjust(settings);
    })
    .await
}

/// A key server with one ES384 key, and the service trusting it as `ISS`'s `jwks_url`.
async fn setup() -> (TestApp, KeyServer, Signer) {
    let signer = es384("ehr-key-1");
    let keys = spawn_key_server(vec![signer.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(ISS, Some(keys.url()), vec![])], |_| {}).await;
    (app, keys, signer)
}

impl TestApp {
    async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).bearer_auth(token).send().await.expect("the request is sent")
    }

    async fn post_with_token(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("the request is sent")
    }
}

/// The one answer every refused token gets.
fn expected_refusal() -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": "login",
            "diagnostics": "Authentication failed: a valid CDS Hooks bearer JWT from a trusted EHR is required."
        }]
    })
}

/// Asserts the fixed 401 and returns its raw body.
async fn assert_refused(response: reqwest::Response) -> Vec<u8> {
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("application/fhir+json"));
    let body = response.bytes().await.expect("a body").to_vec();
    let value: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(value, expected_refusal());
    body
}

// ---------------------------------------------------------------------------------------------
// Good tokens

#[tokio::test]
async fn a_valid_es384_token_is_accepted_on_discovery_and_on_the_service() {
    let (app, _keys, signer) = setup().await;
    let response = app.get_with_token(DISCOVERY, &signer.sign(&claims(DISCOVERY))).await;
    assert_eq!(response.status().as_u16(), 200);
    let response = app
        .post_with_token(SERVICE, &signer.sign(&claims(SERVICE)), &vignette_request("dvt-unlikely-calf-pain-only"))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert!(body["cards"].as_array().is_some_and(|cards| !cards.is_empty()));
}

#[tokio::test]
async fn a_valid_rs384_token_is_accepted() {
    let signer = rs384("ehr-rsa-1");
    let keys = spawn_key_server(vec![signer.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(ISS, Some(keys.url()), vec![])], |_| {}).await;
    let response = app.get_with_token(DISCOVERY, &signer.sign(&claims(DISCOVERY))).await;
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_token_shaped_like_the_cds_hooks_sandboxs_is_accepted() {
    // The Sandbox signs ES384 with a kid and a jku, exp = iat + 300, a UUID jti, no sub.
    let signer = es384(&uuid::Uuid::new_v4().to_string());
    let keys = spawn_key_server(vec![signer.jwk()]).await;
    let jku = format!("{}/.well-known/jwks.json", keys.base);
    let sandbox = "https://sandbox.cds-hooks.org";
    let app = spawn_app_trusting(vec![trusted(sandbox, None, vec![jku.clone()])], |_| {}).await;
    for path in [DISCOVERY, SERVICE] {
        let iat = now();
        let claims = json!({
            "iss": sandbox,
            "aud": format!("{PUBLIC_URL}{path}"),
            "exp": iat + 300,
            "iat": iat,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = signer.header();
        header.jku = Some(jku.clone());
        let token = signer.sign_with(header, &claims);
        let response = if path == SERVICE {
            app.post_with_token(path, &token, &vignette_request("dvt-unlikely-calf-pain-only")).await
        } else {
            app.get_with_token(path, &token).await
        };
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn keys_from_a_local_jwks_file_are_used() {
    let signer = es384("file-key");
    let path = std::env::temp_dir().join(format!("popliteal-jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, serde_json::to_vec(&json!({ "keys": [signer.jwk()] })).expect("JSON")).expect("written");
    let issuer =
        TrustedIssuer { iss: ISS.into(), jwks_url: None, jwks_file: Some(path.clone()), jku_allowlist: vec![] };
    let app = spawn_app_trusting(vec![issuer], |_| {}).await;
    let response = app.get_with_token(DISCOVERY, &signer.sign(&claims(DISCOVERY))).await;
    std::fs::remove_file(&path).expect("removed");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_key_set_again_so_a_rotated_key_is_accepted() {
    let (app, keys, old) = setup().await;
    assert_eq!(app.get_with_token(DISCOVERY, &old.sign(&claims(DISCOVERY))).await.status().as_u16(), 200);
    assert_eq!(keys.fetches(), 1);
    assert_eq!(app.get_with_token(DISCOVERY, &old.sign(&claims(DISCOVERY))).await.status().as_u16(), 200);
    assert_eq!(keys.fetches(), 1, "a known kid is served from the cache");

    let new = es384("ehr-key-2");
    keys.serve(vec![new.jwk()]);
    assert_eq!(app.get_with_token(DISCOVERY, &new.sign(&claims(DISCOVERY))).await.status().as_u16(), 200);
    assert_eq!(keys.fetches(), 2);
    // The old key left the key set with the rotation.
    assert_refused(app.get_with_token(DISCOVERY, &old.sign(&claims(DISCOVERY))).await).await;
}

#[tokio::test]
async fn unknown_kids_fetch_the_key_set_at_most_once_per_interval() {
    let signer = es384("ehr-key-1");
    let keys = spawn_key_server(vec![signer.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(ISS, Some(keys.url()), vec![])], |settings| {
        settings.auth.jwks_refresh_min_interval_seconds = 60;
    })
    .await;
    assert_eq!(app.get_with_token(DISCOVERY, &signer.sign(&claims(DISCOVERY))).await.status().as_u16(), 200);
    for n in 0..5 {
        let stranger = es384(&format!("unknown-{n}"));
        assert_refused(app.get_with_token(DISCOVERY, &stranger.sign(&claims(DISCOVERY))).await).await;
    }
    assert_eq!(keys.fetches(), 1);
}

// ---------------------------------------------------------------------------------------------
// Bad tokens: each one gets the same 401

#[tokio::test]
async fn a_request_without_an_authorization_header_is_refused() {
    let (app, _keys, _signer) = setup().await;
    assert_refused(app.get(DISCOVERY).await).await;
    assert_refused(app.post_json(SERVICE, &vignette_request("dvt-unlikely-calf-pain-only")).await).await;
}

#[tokio::test]
async fn a_token_for_another_url_is_refused() {
    let (app, _keys, signer) = setup().await;
    // Meant for the discovery endpoint, sent to the service.
    let token = signer.sign(&claims(DISCOVERY));
    assert_refused(app.post_with_token(SERVICE, &token, &vignette_request("dvt-unlikely-calf-pain-only")).await).await;
    // The right path behind the wrong base URL.
    let mut other = claims(DISCOVERY);
    other["aud"] = json!(format!("https://elsewhere.example.org{DISCOVERY}"));
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&other)).await).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (app, _keys, signer) = setup().await;
    let mut expired = claims(DISCOVERY);
    let iat = now() - 900;
    expired["iat"] = json!(iat);
    expired["nbf"] = json!(iat);
    expired["exp"] = json!(iat + 300);
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&expired)).await).await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let (app, _keys, signer) = setup().await;
    let mut future = claims(DISCOVERY);
    let iat = now() + 600;
    future["iat"] = json!(iat);
    future["exp"] = json!(iat + 300);
    future.as_object_mut().expect("object").remove("nbf");
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&future)).await).await;
}

#[tokio::test]
async fn a_token_living_longer_than_an_hour_is_refused() {
    let (app, _keys, signer) = setup().await;
    let mut long = claims(DISCOVERY);
    long["exp"] = json!(now() + 3601);
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&long)).await).await;
}

#[tokio::test]
async fn a_token_from_an_unknown_issuer_is_refused() {
    let (app, _keys, signer) = setup().await;
    let mut stranger = claims(DISCOVERY);
    stranger["iss"] = json!("https://unknown-ehr.example.org");
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&stranger)).await).await;
}

#[tokio::test]
async fn a_jku_not_on_the_allowlist_is_never_fetched_and_the_issuers_configured_keys_verify_the_token() {
    let signer = es384("ehr-key-1");
    let configured = spawn_key_server(vec![signer.jwk()]).await;
    let listed = spawn_key_server(vec![signer.jwk()]).await;
    let unlisted = spawn_key_server(vec![signer.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(ISS, Some(configured.url()), vec![listed.url()])], |_| {}).await;
    let mut header = signer.header();
    header.jku = Some(unlisted.url());
    let response = app.get_with_token(DISCOVERY, &signer.sign_with(header, &claims(DISCOVERY))).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!((unlisted.fetches(), configured.fetches(), listed.fetches()), (0, 1, 0));
    // A jku on the allowlist is fetched, as before.
    let mut header = signer.header();
    header.jku = Some(listed.url());
    let response = app.get_with_token(DISCOVERY, &signer.sign_with(header, &claims(DISCOVERY))).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!((unlisted.fetches(), configured.fetches(), listed.fetches()), (0, 1, 1));
}

#[tokio::test]
async fn a_jku_not_on_the_allowlist_is_refused_and_never_fetched_when_the_issuer_has_only_an_allowlist() {
    let signer = es384("ehr-key-1");
    let listed = spawn_key_server(vec![signer.jwk()]).await;
    let unlisted = spawn_key_server(vec![signer.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(ISS, None, vec![listed.url()])], |_| {}).await;
    let mut header = signer.header();
    header.jku = Some(unlisted.url());
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign_with(header, &claims(DISCOVERY))).await).await;
    assert_eq!(unlisted.fetches(), 0);
    let mut header = signer.header();
    header.jku = Some(listed.url());
    assert_eq!(
        app.get_with_token(DISCOVERY, &signer.sign_with(header, &claims(DISCOVERY))).await.status().as_u16(),
        200
    );
}

const SANDBOX_ISS: &str = "https://sandbox.cds-hooks.org";
/// The jku the CDS Hooks Sandbox puts in every header (never fetched by these tests: the network
/// is closed, so a fetch would fail and the token be refused).
const SANDBOX_JKU: &str = "https://sandbox.cds-hooks.org/.well-known/jwks.json";

/// A token as the Sandbox signs it: header `{"alg":"ES384","typ":"JWT","kid":...,"jku":...}`,
/// claims iss, aud (the exact URL called), exp = iat + 300, iat, a fresh jti, and nothing else.
fn sandbox_token(signer: &Signer, path: &str) -> String {
    let iat = now();
    let claims = json!({
        "iss": SANDBOX_ISS,
        "aud": format!("{PUBLIC_URL}{path}"),
        "exp": iat + 300,
        "iat": iat,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let mut header = signer.header();
    header.jku = Some(SANDBOX_JKU.to_owned());
    let token = signer.sign_with(header, &claims);
    let decoded = jsonwebtoken::decode_header(&token).expect("a header");
    assert_eq!(
        (decoded.alg, decoded.typ.as_deref(), decoded.jku.as_deref()),
        (Algorithm::ES384, Some("JWT"), Some(SANDBOX_JKU))
    );
    token
}

#[tokio::test]
async fn the_sandboxs_tokens_are_verified_with_the_key_set_registered_for_it_whatever_their_jku() {
    let signer = es384(&uuid::Uuid::new_v4().to_string());
    let keys = spawn_key_server(vec![signer.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(SANDBOX_ISS, Some(keys.url()), vec![])], |_| {}).await;
    let first = sandbox_token(&signer, DISCOVERY);
    assert_eq!(app.get_with_token(DISCOVERY, &first).await.status().as_u16(), 200);
    let response = app
        .post_with_token(SERVICE, &sandbox_token(&signer, SERVICE), &vignette_request("dvt-unlikely-calf-pain-only"))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    // Each token once: the Sandbox's unique jti is remembered.
    assert_refused(app.get_with_token(DISCOVERY, &first).await).await;

    let path = std::env::temp_dir().join(format!("popliteal-sandbox-jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, serde_json::to_vec(&json!({ "keys": [signer.jwk()] })).expect("JSON")).expect("written");
    let issuer =
        TrustedIssuer { iss: SANDBOX_ISS.into(), jwks_url: None, jwks_file: Some(path.clone()), jku_allowlist: vec![] };
    let from_file = spawn_app_trusting(vec![issuer], |_| {}).await;
    let response = from_file.get_with_token(DISCOVERY, &sandbox_token(&signer, DISCOVERY)).await;
    std::fs::remove_file(&path).expect("removed");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_sandbox_shaped_token_signed_with_another_key_is_refused() {
    let registered = es384("sandbox-key");
    let keys = spawn_key_server(vec![registered.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(SANDBOX_ISS, Some(keys.url()), vec![])], |_| {}).await;
    let impostor = es384(&registered.kid);
    assert_refused(app.get_with_token(DISCOVERY, &sandbox_token(&impostor, DISCOVERY)).await).await;
    assert_refused(app.get_with_token(DISCOVERY, &sandbox_token(&es384("another-kid"), DISCOVERY)).await).await;
}

#[tokio::test]
async fn a_jku_allowed_for_another_issuer_is_refused() {
    let signer = es384("ehr-key-1");
    let theirs = spawn_key_server(vec![signer.jwk()]).await;
    let ours = spawn_key_server(vec![es384("ours").jwk()]).await;
    let app = spawn_app_trusting(
        vec![
            trusted(ISS, Some(ours.url()), vec![]),
            trusted("https://other-ehr.example.org", None, vec![theirs.url()]),
        ],
        |_| {},
    )
    .await;
    let mut header = signer.header();
    header.jku = Some(theirs.url());
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign_with(header, &claims(DISCOVERY))).await).await;
    assert_eq!(theirs.fetches(), 0);
}

#[tokio::test]
async fn an_unsigned_token_with_alg_none_is_refused() {
    let (app, _keys, signer) = setup().await;
    let header = json!({ "alg": "none", "typ": "JWT", "kid": signer.kid });
    let body = b64(&claims(DISCOVERY));
    for token in [format!("{}.{body}.", b64(&header)), format!("{}.{body}.c2lnbmF0dXJl", b64(&header))] {
        assert_refused(app.get_with_token(DISCOVERY, &token).await).await;
    }
}

#[tokio::test]
async fn an_hs256_token_is_refused_even_when_keyed_with_the_public_key() {
    let (app, _keys, signer) = setup().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(signer.kid.clone());
    for secret in [b"a shared secret of thirty-two bytes!".to_vec(), serde_json::to_vec(&signer.jwk()).expect("JSON")] {
        let token = jsonwebtoken::encode(&header, &claims(DISCOVERY), &EncodingKey::from_secret(&secret))
            .expect("an HMAC token");
        assert_refused(app.get_with_token(DISCOVERY, &token).await).await;
    }
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let (app, _keys, signer) = setup().await;
    let token = signer.sign(&claims(DISCOVERY));
    assert_eq!(app.get_with_token(DISCOVERY, &token).await.status().as_u16(), 200);
    assert_refused(app.get_with_token(DISCOVERY, &token).await).await;
    // The same jti in a freshly signed token is a replay too.
    let mut again = claims(DISCOVERY);
    again["jti"] = serde_json::from_str::<Value>(
        &String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).expect("claims"))
                .expect("b64"),
        )
        .expect("utf-8"),
    )
    .expect("JSON")["jti"]
        .clone();
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&again)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgresql_database_refuse_a_token_another_replica_accepted() {
    if crate::support::postgres_skipped() {
        return;
    }
    let database = crate::support::TestDatabase::new(crate::support::Backend::Postgres).await;
    let signer = es384("ehr-key-1");
    let keys = spawn_key_server(vec![signer.jwk()]).await;
    let replica = || {
        let url = database.url.clone();
        spawn_app_trusting(vec![trusted(ISS, Some(keys.url()), vec![])], move |settings| {
            settings.database.url = url.into();
        })
    };
    let (first, second) = (replica().await, replica().await);
    let token = signer.sign(&claims(DISCOVERY));
    assert_eq!(first.get_with_token(DISCOVERY, &token).await.status().as_u16(), 200);
    assert_refused(second.get_with_token(DISCOVERY, &token).await).await;
    assert_refused(first.get_with_token(DISCOVERY, &token).await).await;
    // A fresh token is accepted by either.
    assert_eq!(second.get_with_token(DISCOVERY, &signer.sign(&claims(DISCOVERY))).await.status().as_u16(), 200);
    // The table holds each accepted token once, until it expires.
    let rows = database.store().purge_expired_jtis(i64::MAX).await.expect("purged");
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn a_token_signed_by_another_key_with_a_known_kid_is_refused() {
    let (app, _keys, signer) = setup().await;
    let impostor = es384(&signer.kid);
    assert_refused(app.get_with_token(DISCOVERY, &impostor.sign(&claims(DISCOVERY))).await).await;
}

#[tokio::test]
async fn a_token_whose_alg_does_not_fit_the_key_is_refused() {
    let rsa = rs384("ehr-rsa-1");
    let keys = spawn_key_server(vec![rsa.jwk()]).await;
    let app = spawn_app_trusting(vec![trusted(ISS, Some(keys.url()), vec![])], |_| {}).await;
    // An ES384 token naming the issuer's RSA key.
    let ec = es384(&rsa.kid);
    assert_refused(app.get_with_token(DISCOVERY, &ec.sign(&claims(DISCOVERY))).await).await;
}

#[tokio::test]
async fn tokens_missing_a_required_part_are_refused() {
    let (app, _keys, signer) = setup().await;
    for claim in ["iss", "aud", "exp", "iat", "jti"] {
        let mut partial = claims(DISCOVERY);
        partial.as_object_mut().expect("object").remove(claim);
        assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&partial)).await).await;
    }
    let mut no_kid = signer.header();
    no_kid.kid = None;
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign_with(no_kid, &claims(DISCOVERY))).await).await;
    let mut not_jwt = signer.header();
    not_jwt.typ = Some("at+jwt".into());
    assert_refused(app.get_with_token(DISCOVERY, &signer.sign_with(not_jwt, &claims(DISCOVERY))).await).await;
}

#[tokio::test]
async fn every_refusal_has_the_same_body_whatever_check_failed() {
    let (app, _keys, signer) = setup().await;
    let mut bodies = Vec::new();
    bodies.push(assert_refused(app.get(DISCOVERY).await).await);
    let basic = app
        .client
        .get(format!("{}{DISCOVERY}", app.address))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("sent");
    bodies.push(assert_refused(basic).await);
    bodies.push(assert_refused(app.get_with_token(DISCOVERY, "not.a.jwt").await).await);
    let mut expired = claims(DISCOVERY);
    expired["exp"] = json!(now() - 600);
    expired["iat"] = json!(now() - 900);
    bodies.push(assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&expired)).await).await);
    let mut stranger = claims(DISCOVERY);
    stranger["iss"] = json!("https://unknown-ehr.example.org");
    bodies.push(assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&stranger)).await).await);
    bodies.push(assert_refused(app.get_with_token(DISCOVERY, &signer.sign(&claims(SERVICE))).await).await);
    let token = signer.sign(&claims(DISCOVERY));
    assert_eq!(app.get_with_token(DISCOVERY, &token).await.status().as_u16(), 200);
    bodies.push(assert_refused(app.get_with_token(DISCOVERY, &token).await).await);
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]), "the 401 bodies differ");
    let outcome: Value = serde_json::from_slice(&bodies[0]).expect("JSON");
    let text = outcome["issue"][0]["diagnostics"].as_str().expect("diagnostics").to_lowercase();
    for word in ["exp", "iss", "aud", "jti", "kid", "signature", "expired", "issuer", "replay"] {
        assert!(!text.contains(word), "the 401 names a check: {word}");
    }
}

// ---------------------------------------------------------------------------------------------
// Which check refused a token: the log says it, and only it

/// Everything the service logs while `work` runs on this thread.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

/// An issuer whose keys are found only through an allowlisted `jku`.
const ALLOWLIST_ONLY: &str = "https://allowlist-only.example.org";

#[tokio::test]
async fn each_bad_token_is_refused_by_its_own_check_and_logged_without_the_token() {
    let signer = es384("ehr-key-1");
    let rsa = rs384("ehr-rsa-1");
    let keys = spawn_key_server(vec![signer.jwk(), rsa.jwk()]).await;
    let unlisted = spawn_key_server(vec![signer.jwk()]).await;
    let settings = test_settings(|settings| {
        settings.environment = Environment::Production;
        settings.auth.mode = AuthMode::Jwt;
        settings.auth.issuers =
            vec![trusted(ISS, Some(keys.url()), vec![keys.url()]), trusted(ALLOWLIST_ONLY, None, vec![keys.url()])];
        settings.auth.jwks_refresh_min_interval_seconds = 60;
        settings.server.public_url = HttpUrl::try_from(PUBLIC_URL.to_owned()).expect("a URL");
    });
    let authenticator = Authenticator::from_settings(&settings).expect("valid settings").expect("jwt mode");

    let good = || claims(DISCOVERY);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good();
        change(&mut claims);
        claims
    };
    let header_with = |change: &dyn Fn(&mut Header)| {
        let mut header = signer.header();
        change(&mut header);
        header
    };
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let replayed = signer.sign(&good());
    assert!(authenticator.verify(bearer(replayed.clone()).as_deref().map(str::as_bytes), DISCOVERY).await.is_ok());
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, &good(), &EncodingKey::from_secret(b"a shared secret of thirty-two bytes!"))
            .expect("an HMAC token")
    };
    let none = format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT", "kid": signer.kid })), b64(&good()));
    let now = now();

    let cases: Vec<(&str, Option<String>, Reason)> = vec![
        ("no header", None, Reason::MissingHeader),
        ("basic", Some("Basic dXNlcjpwYXNz".into()), Reason::NotBearer),
        ("garbage", bearer("not.a.jwt".into()), Reason::Malformed),
        ("alg none", bearer(none), Reason::AlgorithmNotAllowed),
        ("HS256", bearer(hs256), Reason::AlgorithmNotAllowed),
        ("typ", bearer(signer.sign_with(header_with(&|h| h.typ = Some("at+jwt".into())), &good())), Reason::NotJwtType),
        ("no kid", bearer(signer.sign_with(header_with(&|h| h.kid = None), &good())), Reason::MissingKid),
        (
            "crit",
            bearer(signer.sign_with(header_with(&|h| h.crit = Some(vec!["b64".into()])), &good())),
            Reason::CriticalHeader,
        ),
        ("no iss", bearer(signer.sign(&with(&|c| c["iss"] = Value::Null))), Reason::MissingIssuer),
        (
            "unknown iss",
            bearer(signer.sign(&with(&|c| c["iss"] = json!("https://unknown.example.org")))),
            Reason::UnknownIssuer,
        ),
        (
            "unlisted jku",
            bearer(signer.sign_with(
                header_with(&|h| h.jku = Some(unlisted.url())),
                &with(&|c| c["iss"] = json!(ALLOWLIST_ONLY)),
            )),
            Reason::JkuNotAllowed,
        ),
        ("unknown kid", bearer(es384("unknown").sign(&good())), Reason::UnknownKid),
        ("key does not fit", bearer(es384(&rsa.kid).sign(&good())), Reason::KeyDoesNotFitAlgorithm),
        ("impostor", bearer(es384(&signer.kid).sign(&good())), Reason::BadSignature),
        (
            "expired",
            bearer(signer.sign(&with(&|c| {
                c["iat"] = json!(now - 900);
                c["nbf"] = json!(now - 900);
                c["exp"] = json!(now - 600);
            }))),
            Reason::Expired,
        ),
        ("nbf", bearer(signer.sign(&with(&|c| c["nbf"] = json!(now + 600)))), Reason::NotYetValid),
        ("aud", bearer(signer.sign(&claims(SERVICE))), Reason::WrongAudience),
        ("no aud", bearer(signer.sign(&with(&|c| c["aud"] = Value::Null))), Reason::MissingClaim),
        (
            "no exp",
            bearer(signer.sign(&with(&|c| {
                c.as_object_mut().expect("object").remove("exp");
            }))),
            Reason::MissingClaim,
        ),
        (
            "no iat",
            bearer(signer.sign(&with(&|c| {
                c.as_object_mut().expect("object").remove("iat");
            }))),
            Reason::MissingClaim,
        ),
        (
            "future iat",
            bearer(signer.sign(&with(&|c| {
                c["iat"] = json!(now + 600);
                c["exp"] = json!(now + 900);
                c.as_object_mut().expect("object").remove("nbf");
            }))),
            Reason::IssuedInTheFuture,
        ),
        (
            "long life",
            bearer(signer.sign(&with(&|c| {
                c["iat"] = json!(now);
                c["exp"] = json!(now + 3601);
            }))),
            Reason::LivesTooLong,
        ),
        (
            "no jti",
            bearer(signer.sign(&with(&|c| {
                c.as_object_mut().expect("object").remove("jti");
            }))),
            Reason::MissingJti,
        ),
        ("absurd iat", bearer(signer.sign(&with(&|c| c["iat"] = json!(-1e300)))), Reason::LivesTooLong),
        ("replayed", bearer(replayed), Reason::Replayed),
    ];

    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _on_this_thread = tracing::subscriber::set_default(subscriber);
    for (name, header, reason) in &cases {
        let authorization = header.as_deref().map(str::as_bytes);
        let failure = authenticator.verify(authorization, DISCOVERY).await.err();
        assert_eq!(failure.map(|f| f.reason), Some(*reason), "{name}");
        assert!(authenticator.authenticate(authorization, DISCOVERY).await.is_none(), "{name}");
    }
    let text = log.text();
    for (name, header, reason) in &cases {
        assert!(text.contains(reason.as_str()), "the log names the check for {name}: {text}");
        if let Some(token) = header.as_deref().and_then(|h| h.split_whitespace().nth(1)) {
            assert!(!text.contains(token), "the log holds the token of {name}");
            if let Some(signature) = token.split('.').nth(2).filter(|s| s.len() > 8) {
                assert!(!text.contains(signature), "the log holds a signature ({name})");
            }
        }
    }
    for claim_content in ["north-hospital", "ehr-client-1", "dXNlcjpwYXNz"] {
        assert!(!text.contains(claim_content), "the log holds {claim_content}");
    }
    assert!(text.contains(ISS) && text.contains("ehr-key-1"), "iss and kid are logged: {text}");
}

// ---------------------------------------------------------------------------------------------
// What stays open, and what production refuses

#[tokio::test]
async fn health_readiness_the_questionnaire_and_the_openapi_document_need_no_token() {
    let (app, _keys, _signer) = setup().await;
    assert_eq!(app.get("/health").await.status().as_u16(), 200);
    assert_eq!(app.get("/ready").await.status().as_u16(), 200);
    assert_eq!(app.get("/fhir/Questionnaire/posterior-knee-pain").await.status().as_u16(), 200);
    assert_eq!(app.get("/openapi.yaml").await.status().as_u16(), 200);
    assert_eq!(app.get("/openapi.yaml.bak").await.status().as_u16(), 401, "only the document itself is open");
}

/// The application state for these settings, with an in-memory store.
fn build_state(settings: &Settings) -> Result<popliteal::startup::AppState, popliteal::startup::StartupError> {
    let mut settings = settings.clone();
    settings.database.url = "sqlite::memory:".to_owned().into();
    let store = popliteal::store::Store::connect(&settings.database).expect("an in-memory store");
    settings.audit.spool_dir = None;
    let (auditor, _writer) =
        popliteal::audit::Auditor::start(store.clone(), &settings.audit).expect("the audit spool starts");
    popliteal::startup::AppState::build(&settings, store, auditor)
}

#[tokio::test]
async fn production_authenticates_by_default_and_refuses_to_start_with_auth_off() {
    let directory = popliteal::configuration::configuration_directory().expect("the config folder");
    let load = |environment: &str, variables: &[(&str, &str)]| {
        let key = ("POPLITEAL__AUDIT__PATIENT_HASH_KEY", "a-test-key-of-at-least-32-characters!!");
        let variables = variables.iter().chain([&key]).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::load_with_variables(environment, &directory, Some(variables))
    };
    let production = load("production", &[]).expect("production settings load");
    assert_eq!(production.auth.mode, AuthMode::Jwt);
    assert!(build_state(&production).is_ok());
    match load("production", &[("POPLITEAL__AUTH__MODE", "off")]) {
        Err(error) => assert!(error.to_string().contains("production"), "{error}"),
        Ok(_) => panic!("auth.mode = off must not load in production"),
    }
    let local = load("local", &[]).expect("local settings load");
    assert_eq!(local.auth.mode, AuthMode::Off);
    assert!(build_state(&local).is_ok(), "off is allowed locally");
    let plain_http = r#"[{"iss": "https://ehr.example.org", "jwks_url": "http://ehr.example.org/jwks.json"}]"#;
    let error = load("local", &[("POPLITEAL__AUTH__MODE", "jwt"), ("POPLITEAL__AUTH__ISSUERS", plain_http)])
        .expect_err("key sets come over https");
    assert!(error.to_string().contains("https"), "{error}");
    assert_eq!(test_settings(|_| {}).auth.mode, AuthMode::Off);
}

// ---------------------------------------------------------------------------------------------
// CORS for browser clients

const SANDBOX_ORIGIN: &str = "https://sandbox.cds-hooks.org";

#[tokio::test]
async fn a_cors_preflight_from_the_sandbox_is_answered_with_authorization_allowed() {
    let (app, _keys, _signer) = setup().await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}{SERVICE}", app.address))
        .header("origin", SANDBOX_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], SANDBOX_ORIGIN);
    let allowed = headers["access-control-allow-headers"].to_str().expect("ascii").to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert!(headers["access-control-allow-methods"].to_str().expect("ascii").contains("POST"));
}

#[tokio::test]
async fn a_cors_preflight_from_another_origin_is_refused_with_an_operation_outcome() {
    let (app, _keys, _signer) = setup().await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}{SERVICE}", app.address))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn browser_calls_get_cors_headers_on_answers_and_on_refusals() {
    let (app, _keys, signer) = setup().await;
    let ok = app
        .client
        .get(format!("{}{DISCOVERY}", app.address))
        .header("origin", SANDBOX_ORIGIN)
        .bearer_auth(signer.sign(&claims(DISCOVERY)))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], SANDBOX_ORIGIN);
    let refused = app
        .client
        .get(format!("{}{DISCOVERY}", app.address))
        .header("origin", SANDBOX_ORIGIN)
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.headers()["access-control-allow-origin"], SANDBOX_ORIGIN);
    assert_refused(refused).await;
}

// ---------------------------------------------------------------------------------------------
// Limits

async fn assert_throttled(response: reqwest::Response) {
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(retry_after >= 1);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "throttled");
}

#[tokio::test]
async fn an_issuer_over_its_rate_gets_429_while_another_issuer_goes_on() {
    let signer = es384("ehr-key-1");
    let keys = spawn_key_server(vec![signer.jwk()]).await;
    let other_iss = "https://other-ehr.example.org";
    let app = spawn_app_trusting(
        vec![trusted(ISS, Some(keys.url()), vec![]), trusted(other_iss, Some(keys.url()), vec![])],
        |settings| {
            settings.limits.requests_per_second = std::num::NonZeroU32::new(1).expect("positive");
            settings.limits.burst = std::num::NonZeroU32::new(2).expect("positive");
        },
    )
    .await;
    for _ in 0..2 {
        assert_eq!(app.get_with_token(DISCOVERY, &signer.sign(&claims(DISCOVERY))).await.status().as_u16(), 200);
    }
    assert_throttled(app.get_with_token(DISCOVERY, &signer.sign(&claims(DISCOVERY))).await).await;
    let mut other = claims(DISCOVERY);
    other["iss"] = json!(other_iss);
    assert_eq!(app.get_with_token(DISCOVERY, &signer.sign(&other)).await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_client_without_authentication_is_limited_by_address() {
    let app = spawn_app_with(|settings| {
        settings.limits.requests_per_second = std::num::NonZeroU32::new(1).expect("positive");
        settings.limits.burst = std::num::NonZeroU32::new(2).expect("positive");
    })
    .await;
    for _ in 0..2 {
        assert_eq!(app.get(DISCOVERY).await.status().as_u16(), 200);
    }
    assert_throttled(app.get(DISCOVERY).await).await;
    assert_eq!(app.get("/health").await.status().as_u16(), 200, "liveness is never limited");
}

#[tokio::test]
async fn an_address_sending_refused_tokens_is_slowed_down() {
    let (app, _keys, _signer) = {
        let signer = es384("ehr-key-1");
        let keys = spawn_key_server(vec![signer.jwk()]).await;
        let app = spawn_app_trusting(vec![trusted(ISS, Some(keys.url()), vec![])], |settings| {
            settings.limits.requests_per_second = std::num::NonZeroU32::new(1).expect("positive");
            settings.limits.burst = std::num::NonZeroU32::new(3).expect("positive");
        })
        .await;
        (app, keys, signer)
    };
    for _ in 0..3 {
        assert_refused(app.get(DISCOVERY).await).await;
    }
    assert_throttled(app.get(DISCOVERY).await).await;
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn a_body_nested_deeper_than_the_limit_is_a_400() {
    let app = spawn_app_with(|settings| {
        settings.limits.max_json_depth = popliteal::configuration::JsonDepth::try_from(64).expect("a usable depth")
    })
    .await;
    // The envelope is the first level; 64 arrays inside it make 65.
    let body = format!(r#"{{"hook": "patient-view", "extra": {}}}"#, nested(64));
    let response = app.post_raw(SERVICE, body.into_bytes()).await;
    assert_eq!(response.status().as_u16(), 400);
    let outcome: Value = response.json().await.expect("JSON");
    assert!(outcome["issue"][0]["diagnostics"].as_str().expect("text").contains("deeper than 64"), "{outcome}");

    let mut request = vignette_request("dvt-unlikely-calf-pain-only");
    request["extra"] = serde_json::from_str(&nested(63)).expect("JSON");
    assert_eq!(app.post_json(SERVICE, &request).await.status().as_u16(), 200, "64 levels pass");
}
