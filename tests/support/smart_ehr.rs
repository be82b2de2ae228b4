//! A test double of an EHR for SMART App Launch 2.0: an authorization server (authorize and token
//! endpoints, PKCE S256, an OpenID Connect `id_token`) and a small FHIR R4 API for one patient, on
//! `127.0.0.1:<free port>`. The end-to-end tests of the intake app launch it against this double
//! in headless Chromium, choose how the double misbehaves ([`EhrOptions`]) and afterwards read
//! what it was asked and what it stored.
//!
//! It checks what a real SMART 2.0 EHR checks (registered client, `aud`, `state`, PKCE, a single
//! use code, the bearer token on every FHIR call) and answers CORS as one does, so that an app on
//! another origin (the service's) can call it from the browser.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The secret the double signs its `id_token`s with (HS256): the app only decodes them.
pub const ID_TOKEN_SECRET: &[u8] = b"the-smart-ehr-double-signs-id-tokens-with-this";

/// How long a [`WriteBehaviour::Hang`] write is held before the double gives up on it itself.
pub const HANG_FOR: Duration = Duration::from_secs(60);

/// What the authorize endpoint does with a request that passes its checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeBehaviour {
    /// Redirects back with a code and the state that was sent.
    Approve,
    /// Redirects back with a code and a state that is not the one sent (a forged callback).
    ForgeState,
}

/// What the token endpoint does with a request that passes its checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenBehaviour {
    /// Issues an access token (and an `id_token` when `openid fhirUser` were asked for).
    Issue,
    /// Answers 400 `{"error":"invalid_grant"}` whatever was sent.
    Refuse,
}

/// What one `POST /fhir/QuestionnaireResponse` gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteBehaviour {
    /// Stores it (after checking it is a QuestionnaireResponse) and answers 201.
    Store,
    /// Answers this status (401, 403, 500, 503...) with an OperationOutcome and stores nothing.
    Fail(u16),
    /// Answers nothing for [`HANG_FOR`] (or until the double is dropped), then 504; stores nothing.
    Hang,
}

/// How the double is set up: whom it knows, what the record holds and how it misbehaves.
#[derive(Clone, Debug)]
pub struct EhrOptions {
    /// The registered public client: authorize and token requests must name it.
    pub client_id: String,
    /// The Patient resource; its `id` is the launch patient (the token response's `patient`).
    pub patient: Value,
    /// Resources already on the record (Conditions, Observations, Procedures,
    /// MedicationRequests, ServiceRequests, QuestionnaireResponses...): searches return those of
    /// the searched type whose `subject` or `patient` is the patient.
    pub resources: Vec<Value>,
    /// The user, as `Type/id` (`Practitioner/dr-1`, `Patient/<id>`): the `id_token`'s `fhirUser`
    /// is `{fhir_base}/{fhir_user}`. None: no `id_token` is issued.
    pub fhir_user: Option<String>,
    /// Advertises `permission-v2` (SMART 2.0 scopes) when true, else `permission-v1`.
    pub permission_v2: bool,
    /// What the authorize endpoint does.
    pub authorize: AuthorizeBehaviour,
    /// What the token endpoint does.
    pub token: TokenBehaviour,
    /// Consumed one per QuestionnaireResponse create, in order; once empty, every create is
    /// [`WriteBehaviour::Store`].
    pub writes: Vec<WriteBehaviour>,
    /// Returned as `appContext` in the token response when set.
    pub app_context: Option<String>,
}

impl Default for EhrOptions {
    /// A 54-year-old woman (`Patient/pat-1`) with an empty record, a practitioner user
    /// (`Practitioner/dr-1`), client `popliteal-intake`, and an EHR that approves, issues
    /// tokens, speaks SMART 2.0 scopes and stores every write.
    fn default() -> Self {
        EhrOptions {
            client_id: "popliteal-intake".to_owned(),
            patient: json!({
                "resourceType": "Patient",
                "id": "pat-1",
                "active": true,
                "name": [{"use": "official", "family": "Lindqvist", "given": ["Maja"]}],
                "gender": "female",
                "birthDate": "1971-04-12"
            }),
            resources: Vec::new(),
            fhir_user: Some("Practitioner/dr-1".to_owned()),
            permission_v2: true,
            authorize: AuthorizeBehaviour::Approve,
            token: TokenBehaviour::Issue,
            writes: Vec::new(),
            app_context: None,
        }
    }
}

/// One request to the FHIR API (`/fhir/...`), as the double saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FhirRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The path with its query, e.g. `/fhir/Observation?patient=pat-1&code=...`.
    pub path: String,
    /// Whether it carried `Authorization: Bearer <a token this double issued>`.
    pub authorised: bool,
}

/// PKCE S256 (RFC 7636 section 4.2): BASE64URL-no-pad(SHA-256(ASCII(verifier))).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is a well-formed code verifier (43 to 128 unreserved characters, RFC 7636
/// section 4.1) whose S256 challenge is `challenge`.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed && s256_challenge(verifier) == challenge
}

/// A code the authorize endpoint gave out, waiting for its one exchange.
#[derive(Clone, Debug)]
struct PendingCode {
    redirect_uri: String,
    code_challenge: String,
    scope: String,
}

/// What the double holds and has seen; shared by its handlers.
#[derive(Default)]
struct Record {
    codes: BTreeMap<String, PendingCode>,
    tokens: Vec<String>,
    stored: Vec<Value>,
    writes: std::collections::VecDeque<WriteBehaviour>,
    authorize_requests: Vec<BTreeMap<String, String>>,
    token_requests: Vec<BTreeMap<String, String>>,
    fhir_requests: Vec<FhirRequest>,
}

struct Shared {
    options: EhrOptions,
    origin: String,
    launch_id: String,
    record: Mutex<Record>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        // A handler that panicked while holding the lock leaves the record as it was: go on.
        self.record.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fhir_base(&self) -> String {
        format!("{}/fhir", self.origin)
    }

    fn patient_id(&self) -> String {
        self.options.patient["id"].as_str().expect("EhrOptions::patient has an id").to_owned()
    }
}

/// The running double. Dropping it stops the server (and answers any hanging write).
pub struct EhrDouble {
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl EhrDouble {
    /// Starts the double on a free loopback port, in the background of the current tokio runtime.
    pub async fn start(options: EhrOptions) -> EhrDouble {
        assert!(options.patient["id"].is_string(), "EhrOptions::patient needs an id");
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the EHR double");
        let port = listener.local_addr().expect("the EHR double's address").port();
        let (shutdown, shutdown_seen) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            record: Mutex::new(Record { writes: options.writes.clone().into(), ..Record::default() }),
            options,
            origin: format!("http://127.0.0.1:{port}"),
            launch_id: format!("launch-{}", uuid::Uuid::new_v4().simple()),
            shutdown: shutdown_seen,
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
                .route("/ehr/chart", web::get().to(chart))
                .route("/auth/authorize", web::get().to(authorize))
                .route("/auth/token", web::post().to(token))
                .route("/auth/token", web::method(Method::OPTIONS).to(preflight))
                .route("/fhir/.well-known/smart-configuration", web::get().to(smart_configuration))
                .route("/fhir/metadata", web::get().to(capability_statement))
                .route("/fhir/{tail:.*}", web::method(Method::OPTIONS).to(preflight))
                .route("/fhir/{resource_type}", web::get().to(search))
                .route("/fhir/{resource_type}", web::post().to(create))
                .route("/fhir/{resource_type}/{id}", web::get().to(read))
                .default_service(web::to(not_found))
        })
        .workers(2)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)
        .expect("the EHR double listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        EhrDouble { shared, server: handle, shutdown }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// `{origin}/fhir`: the FHIR base, the `iss` of an EHR launch and the `aud` to authorize for.
    pub fn fhir_base(&self) -> String {
        self.shared.fhir_base()
    }

    /// The opaque `launch` value of an EHR launch (the authorize request must carry it back).
    pub fn launch_id(&self) -> String {
        self.shared.launch_id.clone()
    }

    /// The launch patient's id.
    pub fn patient_id(&self) -> String {
        self.shared.patient_id()
    }

    /// QuestionnaireResponses created through the API, as stored (with the id and meta the
    /// double gave them), oldest first.
    pub fn stored_responses(&self) -> Vec<Value> {
        self.shared.record().stored.clone()
    }

    /// The query parameters of every authorize request, accepted or refused, in order.
    pub fn authorize_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.shared.record().authorize_requests.clone()
    }

    /// The form fields of every token request (`code_verifier` included), in order.
    pub fn token_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.shared.record().token_requests.clone()
    }

    /// Every request to `/fhir/...` except CORS preflights, in order.
    pub fn fhir_requests(&self) -> Vec<FhirRequest> {
        self.shared.record().fhir_requests.clone()
    }

    /// The access tokens issued so far, in order.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.record().tokens.clone()
    }

    /// The EHR's own chart page with `app` (a URL) in an iframe, as EHRs embed SMART apps.
    pub fn chart_url(&self, app: &str) -> String {
        let app: String = url::form_urlencoded::byte_serialize(app.as_bytes()).collect();
        format!("{}/ehr/chart?app={app}", self.shared.origin)
    }
}

impl Drop for EhrDouble {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // The stop command is sent now; the returned future only waits for it to finish.
        drop(self.server.stop(false));
    }
}

/// The CORS headers for a request from `Origin` (echoed back; none without one).
fn cors(request: &HttpRequest, mut response: HttpResponseBuilder) -> HttpResponseBuilder {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .insert_header((header::VARY, "Origin"))
            .insert_header((header::ACCESS_CONTROL_EXPOSE_HEADERS, "Location, Content-Location, ETag"));
    }
    response
}

/// `GET /ehr/chart?app=<url>`: a page of the EHR's that frames the app (see `chart_url`).
async fn chart(query: web::Query<BTreeMap<String, String>>) -> HttpResponse {
    let app = query.get("app").map(String::as_str).unwrap_or_default();
    let attribute = app.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>EHR chart</title></head>
<body><main><h1>Chart</h1><iframe id="app" title="Knee pain intake" src="{attribute}" width="1200" height="1500"></iframe></main></body></html>"#
    ))
}

async fn preflight(request: HttpRequest) -> HttpResponse {
    cors(&request, HttpResponse::NoContent())
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization, Content-Type, Accept"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    cors(&request, HttpResponse::NotFound()).content_type("text/plain").body("not found in the EHR double")
}

fn query_map(request: &HttpRequest) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(request.query_string().as_bytes()).into_owned().collect()
}

fn fhir_json(request: &HttpRequest, status: StatusCode, body: &Value) -> HttpResponse {
    cors(request, HttpResponse::build(status)).content_type("application/fhir+json").body(body.to_string())
}

fn outcome(request: &HttpRequest, status: StatusCode, code: &str, text: &str) -> HttpResponse {
    let body = json!({"resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}]});
    fhir_json(request, status, &body)
}

async fn smart_configuration(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    note_fhir_request(&shared, &request);
    let permission = if shared.options.permission_v2 { "permission-v2" } else { "permission-v1" };
    let scopes = if shared.options.permission_v2 {
        ["patient/*.rs", "patient/QuestionnaireResponse.c", "user/*.rs"]
    } else {
        ["patient/*.read", "patient/QuestionnaireResponse.write", "user/*.read"]
    };
    let mut scopes_supported: Vec<&str> =
        vec!["openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access"];
    scopes_supported.extend(scopes);
    let body = json!({
        "issuer": shared.fhir_base(),
        "authorization_endpoint": format!("{}/auth/authorize", shared.origin),
        "token_endpoint": format!("{}/auth/token", shared.origin),
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["authorization_code"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes_supported,
        "capabilities": ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient",
            "context-standalone-patient", "sso-openid-connect", "permission-patient", "permission-user",
            permission],
    });
    cors(&request, HttpResponse::Ok()).content_type("application/json").body(body.to_string())
}

async fn capability_statement(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    note_fhir_request(&shared, &request);
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"}]}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        {"url": "authorize", "valueUri": format!("{}/auth/authorize", shared.origin)},
                        {"url": "token", "valueUri": format!("{}/auth/token", shared.origin)}
                    ]
                }]
            },
            "resource": [
                {"type": "Patient", "interaction": [{"code": "read"}]},
                {"type": "QuestionnaireResponse", "interaction": [{"code": "create"}, {"code": "search-type"}]}
            ]
        }]
    });
    fhir_json(&request, StatusCode::OK, &body)
}

/// Why an authorize request is refused, if it is.
fn authorize_problem(shared: &Shared, query: &BTreeMap<String, String>) -> Option<String> {
    let field = |name: &str| query.get(name).map(String::as_str).filter(|value| !value.is_empty());
    if field("response_type") != Some("code") {
        return Some("response_type must be code".to_owned());
    }
    if field("client_id") != Some(shared.options.client_id.as_str()) {
        return Some(format!("unknown client_id {:?}", field("client_id")));
    }
    match field("redirect_uri").map(url::Url::parse) {
        Some(Ok(uri)) if matches!(uri.scheme(), "http" | "https") => {}
        _ => return Some("redirect_uri must be an absolute http(s) URL".to_owned()),
    }
    if field("aud") != Some(shared.fhir_base().as_str()) {
        return Some(format!("aud {:?} is not this EHR's FHIR base {}", field("aud"), shared.fhir_base()));
    }
    if field("state").is_none() {
        return Some("state is missing".to_owned());
    }
    if field("code_challenge_method") != Some("S256") || field("code_challenge").is_none() {
        return Some("PKCE is required: code_challenge with code_challenge_method S256".to_owned());
    }
    if let Some(launch) = query.get("launch")
        && *launch != shared.launch_id
    {
        return Some(format!("unknown launch {launch:?}"));
    }
    None
}

async fn authorize(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let query = query_map(&request);
    shared.record().authorize_requests.push(query.clone());
    if let Some(problem) = authorize_problem(&shared, &query) {
        return HttpResponse::BadRequest().content_type("text/plain").body(problem);
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let redirect_uri = query["redirect_uri"].clone();
    shared.record().codes.insert(
        code.clone(),
        PendingCode {
            redirect_uri: redirect_uri.clone(),
            code_challenge: query["code_challenge"].clone(),
            scope: query.get("scope").cloned().unwrap_or_default(),
        },
    );
    let state = match shared.options.authorize {
        AuthorizeBehaviour::Approve => query["state"].clone(),
        AuthorizeBehaviour::ForgeState => format!("forged-{}", uuid::Uuid::new_v4().simple()),
    };
    let mut location = url::Url::parse(&redirect_uri).expect("checked above");
    location.query_pairs_mut().append_pair("code", &code).append_pair("state", &state);
    HttpResponse::Found().insert_header((header::LOCATION, location.as_str())).finish()
}

fn invalid_grant(request: &HttpRequest, description: &str) -> HttpResponse {
    cors(request, HttpResponse::BadRequest())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(json!({"error": "invalid_grant", "error_description": description}).to_string())
}

/// The token response for a checked request, or why it is refused.
fn exchange(shared: &Shared, form: &BTreeMap<String, String>) -> Result<Value, String> {
    if shared.options.token == TokenBehaviour::Refuse {
        return Err("this EHR refuses every grant (TokenBehaviour::Refuse)".to_owned());
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return Err("grant_type must be authorization_code".to_owned());
    }
    if field("client_id") != shared.options.client_id {
        return Err(format!("unknown client_id {:?}", field("client_id")));
    }
    // Single use: taken out whatever happens next.
    let pending = shared.record().codes.remove(field("code")).ok_or("unknown or already used code")?;
    if field("redirect_uri") != pending.redirect_uri {
        return Err("redirect_uri differs from the authorize request's".to_owned());
    }
    if !pkce_s256_matches(field("code_verifier"), &pending.code_challenge) {
        return Err("code_verifier does not match the code_challenge (PKCE S256)".to_owned());
    }
    let access_token = format!("at-{}", uuid::Uuid::new_v4().simple());
    shared.record().tokens.push(access_token.clone());
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": pending.scope,
        "patient": shared.patient_id(),
        "need_patient_banner": false,
    });
    if let Some(app_context) = &shared.options.app_context {
        body["appContext"] = json!(app_context);
    }
    let scopes: Vec<&str> = pending.scope.split_whitespace().collect();
    if let Some(user) = &shared.options.fhir_user
        && scopes.contains(&"openid")
        && scopes.contains(&"fhirUser")
    {
        body["id_token"] = json!(id_token(shared, user));
    }
    Ok(body)
}

/// An OpenID Connect id_token (HS256 with [`ID_TOKEN_SECRET`]) for `user` (`Type/id`).
fn id_token(shared: &Shared, user: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": shared.fhir_base(),
        "sub": user.rsplit('/').next().unwrap_or(user),
        "aud": shared.options.client_id,
        "iat": now,
        "exp": now + 3600,
        "fhirUser": format!("{}/{user}", shared.fhir_base()),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(ID_TOKEN_SECRET),
    )
    .expect("an HS256 id_token signs")
}

async fn token(request: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    shared.record().token_requests.push(form.clone());
    let form_encoded = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return invalid_grant(&request, "the token request must be application/x-www-form-urlencoded");
    }
    match exchange(&shared, &form) {
        Ok(answer) => cors(&request, HttpResponse::Ok())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .content_type("application/json")
            .body(answer.to_string()),
        Err(description) => invalid_grant(&request, &description),
    }
}

/// Records a FHIR request; returns whether it carried a token this double issued.
fn note_fhir_request(shared: &Shared, request: &HttpRequest) -> bool {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let mut record = shared.record();
    let authorised = presented.is_some_and(|token| record.tokens.iter().any(|issued| issued == token));
    let path = match request.query_string() {
        "" => request.path().to_owned(),
        query => format!("{}?{query}", request.path()),
    };
    record.fhir_requests.push(FhirRequest { method: request.method().to_string(), path, authorised });
    authorised
}

fn unauthorised(request: &HttpRequest) -> HttpResponse {
    let mut response =
        outcome(request, StatusCode::UNAUTHORIZED, "login", "a bearer token issued by this EHR is required");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Whether `resource` is about `Patient/{patient_id}` (its `subject` or `patient`, relative or
/// absolute), or is that Patient.
fn belongs_to(resource: &Value, patient_id: &str) -> bool {
    if resource["resourceType"] == "Patient" {
        return resource["id"] == patient_id;
    }
    let wanted = format!("Patient/{patient_id}");
    ["subject", "patient"].iter().any(|field| {
        resource[field]["reference"]
            .as_str()
            .is_some_and(|reference| reference == wanted || reference.ends_with(&format!("/{wanted}")))
    })
}

/// Everything the FHIR API can return: the patient, the given record, what was stored.
fn all_resources(shared: &Shared) -> Vec<Value> {
    let mut all = vec![shared.options.patient.clone()];
    all.extend(shared.options.resources.iter().cloned());
    all.extend(shared.record().stored.iter().cloned());
    all
}

async fn read(request: HttpRequest, path: web::Path<(String, String)>, shared: web::Data<Shared>) -> HttpResponse {
    if !note_fhir_request(&shared, &request) {
        return unauthorised(&request);
    }
    let (resource_type, id) = path.into_inner();
    let found = all_resources(&shared)
        .into_iter()
        .find(|resource| resource["resourceType"] == resource_type.as_str() && resource["id"] == id.as_str());
    match found {
        Some(resource) => fhir_json(&request, StatusCode::OK, &resource),
        None => outcome(&request, StatusCode::NOT_FOUND, "not-found", &format!("{resource_type}/{id} is not known")),
    }
}

async fn search(request: HttpRequest, path: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    if !note_fhir_request(&shared, &request) {
        return unauthorised(&request);
    }
    let resource_type = path.into_inner();
    let patient_id = shared.patient_id();
    let base = shared.fhir_base();
    let entries: Vec<Value> = all_resources(&shared)
        .into_iter()
        .filter(|resource| resource["resourceType"] == resource_type.as_str() && belongs_to(resource, &patient_id))
        .map(|resource| {
            let full_url = format!("{base}/{resource_type}/{}", resource["id"].as_str().unwrap_or_default());
            json!({"fullUrl": full_url, "resource": resource, "search": {"mode": "match"}})
        })
        .collect();
    let self_url = match request.query_string() {
        "" => format!("{base}/{resource_type}"),
        query => format!("{base}/{resource_type}?{query}"),
    };
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": self_url}],
        "entry": entries,
    });
    fhir_json(&request, StatusCode::OK, &bundle)
}

async fn create(
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if !note_fhir_request(&shared, &request) {
        return unauthorised(&request);
    }
    let resource_type = path.into_inner();
    if resource_type != "QuestionnaireResponse" {
        return outcome(
            &request,
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "this EHR accepts creates of QuestionnaireResponse only",
        );
    }
    let behaviour = shared.record().writes.pop_front().unwrap_or(WriteBehaviour::Store);
    match behaviour {
        WriteBehaviour::Fail(status) => {
            let status = StatusCode::from_u16(status).expect("WriteBehaviour::Fail holds an HTTP status");
            outcome(&request, status, "transient", &format!("the EHR failed this write ({status}) on purpose"))
        }
        WriteBehaviour::Hang => {
            let mut shutdown = shared.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(HANG_FOR) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => {}
            }
            outcome(&request, StatusCode::GATEWAY_TIMEOUT, "timeout", "the EHR held this write and gave up")
        }
        WriteBehaviour::Store => store(&request, &shared, &body),
    }
}

fn store(request: &HttpRequest, shared: &Shared, body: &[u8]) -> HttpResponse {
    let mut resource: Value = match serde_json::from_slice(body) {
        Ok(resource) => resource,
        Err(error) => return outcome(request, StatusCode::BAD_REQUEST, "structure", &format!("not JSON: {error}")),
    };
    if resource["resourceType"] != "QuestionnaireResponse" {
        return outcome(request, StatusCode::BAD_REQUEST, "invalid", "resourceType must be QuestionnaireResponse");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let last_updated = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats as RFC 3339");
    resource["id"] = json!(id);
    resource["meta"] = json!({"versionId": "1", "lastUpdated": last_updated});
    shared.record().stored.push(resource.clone());
    let location = format!("{}/QuestionnaireResponse/{id}/_history/1", shared.fhir_base());
    cors(request, HttpResponse::Created())
        .insert_header((header::LOCATION, location))
        .insert_header((header::ETAG, "W/\"1\""))
        .content_type("application/fhir+json")
        .body(resource.to_string())
}
