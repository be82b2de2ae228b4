//! EHR authentication, as CDS Hooks 2.0 ("Trusting CDS Clients") describes it: every call
//! carries `Authorization: Bearer <JWT>`, signed by a trusted issuer.
//!
//! What is checked, in order (the first failure ends it):
//! - the header: `Bearer` and a compact JWS; header `alg` one of ES256, ES384, RS256, RS384,
//!   PS256, PS384, PS512 (never `none` nor HMAC), `typ` JWT, a `kid`, no `crit`;
//! - `iss` is a configured trusted issuer; the header's `jku`, when on that issuer's
//!   `jku_allowlist`, is where the keys come from; otherwise they come from the issuer's
//!   `jwks_url` or `jwks_file` (a `jku` not on the allowlist is ignored, never fetched), and an
//!   issuer with neither refuses a `jku` not on its allowlist;
//! - the key `kid` exists in that key set (fetched again once when unknown, rate-limited) and
//!   fits `alg` (key type, curve, the JWK's own `alg`);
//! - the signature; `exp` (not past, with `clock_skew_seconds`), `nbf` when present, `iss` again,
//!   `aud` equal to `server.public_url` + the request path;
//! - `iat` present, not in the future beyond the skew, and `exp - iat` at most one hour;
//! - `jti` present and not used before by this issuer in a token that has not expired (with
//!   PostgreSQL: by any replica on the same database, through the `auth_jti` table).
//!
//! Other claims (`sub`, `tenant`, ...) are tolerated. A failure answers one fixed 401; the log
//! says which check failed with the token's `iss`, `kid` and `jti` only, never the token.

pub mod keys;
pub mod replay;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::configuration::{AuthMode, Environment, Settings, TrustedIssuer};
use crate::telemetry::{INVALID, loggable_id};
use keys::{HttpFetcher, JwksFetcher, JwksLocation, KeyCache, KeyError};
use replay::{ReplayCache, ReplayError};

/// The signature algorithms accepted (CDS Hooks: ES384 or RS384 recommended).
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The longest a token may live (`exp - iat`), per the CDS Hooks specification.
pub const MAX_TOKEN_LIFETIME_SECONDS: i64 = 3600;

/// Longer Authorization headers are refused without being parsed.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The longest `jti` accepted.
const MAX_JTI_CHARS: usize = 256;

/// Which check refused a token: logged, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingHeader,
    NotBearer,
    Malformed,
    AlgorithmNotAllowed,
    NotJwtType,
    MissingKid,
    CriticalHeader,
    MissingIssuer,
    UnknownIssuer,
    JkuNotAllowed,
    NoKeySource,
    UnknownKid,
    KeysUnavailable,
    KeyDoesNotFitAlgorithm,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    IssuedInTheFuture,
    LivesTooLong,
    MissingJti,
    Replayed,
    ReplayCacheFull,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingHeader => "no Authorization header",
            Reason::NotBearer => "the Authorization header is not a Bearer token",
            Reason::Malformed => "not a well-formed JWT",
            Reason::AlgorithmNotAllowed => "alg not allowed (none, HMAC or unknown)",
            Reason::NotJwtType => "typ is not JWT",
            Reason::MissingKid => "no kid in the header",
            Reason::CriticalHeader => "crit header parameters are not supported",
            Reason::MissingIssuer => "no iss claim",
            Reason::UnknownIssuer => "iss is not a trusted issuer",
            Reason::JkuNotAllowed => "jku is not on the issuer's allowlist",
            Reason::NoKeySource => "no key set for this issuer without jku",
            Reason::UnknownKid => "kid not in the issuer's key set",
            Reason::KeysUnavailable => "the issuer's key set could not be fetched",
            Reason::KeyDoesNotFitAlgorithm => "the key does not fit alg",
            Reason::BadSignature => "bad signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "nbf is in the future",
            Reason::WrongIssuer => "iss does not match",
            Reason::WrongAudience => "aud is not the URL called",
            Reason::MissingClaim => "a required claim (iss, aud, exp, iat) is missing or malformed",
            Reason::IssuedInTheFuture => "iat is in the future",
            Reason::LivesTooLong => "exp - iat is more than an hour",
            Reason::MissingJti => "no usable jti",
            Reason::Replayed => "jti already used",
            Reason::ReplayCacheFull => "the replay cache is full",
        }
    }
}

/// A refused token: the reason and the ids that may be logged.
#[derive(Debug)]
pub struct AuthFailure {
    pub reason: Reason,
    pub iss: Option<String>,
    pub kid: Option<String>,
    pub jti: Option<String>,
}

impl AuthFailure {
    fn new(reason: Reason) -> AuthFailure {
        AuthFailure { reason, iss: None, kid: None, jti: None }
    }

    /// A failure for `reason` with the ids seen so far.
    fn because(&self, reason: Reason) -> AuthFailure {
        AuthFailure { reason, iss: self.iss.clone(), kid: self.kid.clone(), jti: self.jti.clone() }
    }
}

/// The EHR a request comes from, once its token is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedClient {
    pub iss: String,
}

/// What can stop the authenticator from being built: the I/O at start (the issuers' rules are
/// checked when the settings load, see `configuration`).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.issuers: the key set of {iss} ({location}) cannot be used: {error}")]
    KeySet { iss: String, location: String, error: String },
    #[error("cannot build the HTTP client that fetches key sets: {0}")]
    Client(String),
}

/// How long the shared `jti` check may take before this replica's cache alone decides.
const SHARED_REPLAY_TIMEOUT: Duration = Duration::from_millis(500);

/// Verifies tokens against the trusted issuers.
pub struct Authenticator {
    issuers: HashMap<String, TrustedIssuer>,
    keys: KeyCache,
    replay: ReplayCache,
    /// With PostgreSQL: the `jti`s all replicas share (`None`: this process's cache only).
    shared_replay: Option<crate::store::Store>,
    public_url: String,
    skew: i64,
}

/// Where the keys that verify a token of `issuer` are. A `jku` on the issuer's allowlist is
/// fetched; any other `jku` is never fetched: the issuer's own key set (`jwks_url` or
/// `jwks_file`) verifies the token when it has one (many EHRs, the CDS Hooks Sandbox among them,
/// put a `jku` in every header), else the token is refused.
fn key_location(issuer: &TrustedIssuer, jku: Option<&str>) -> Result<JwksLocation, Reason> {
    if let Some(jku) = jku.filter(|jku| issuer.jku_allowlist.iter().any(|allowed| allowed.as_str() == *jku)) {
        return Ok(JwksLocation::Url(jku.to_owned()));
    }
    let configured = match (&issuer.jwks_url, &issuer.jwks_file) {
        (Some(url), _) => Some(JwksLocation::Url(url.as_str().to_owned())),
        (None, Some(path)) => Some(JwksLocation::File(path.clone())),
        (None, None) => None,
    };
    match (jku, configured) {
        (Some(_), Some(location)) => {
            // The jku is the client's text: not logged. The iss is a trusted issuer's.
            tracing::debug!(iss = %issuer.iss, "jku not on the issuer's allowlist: ignored, the issuer's configured key set is used");
            Ok(location)
        }
        (Some(_), None) => Err(Reason::JkuNotAllowed),
        (None, Some(location)) => Ok(location),
        (None, None) => Err(Reason::NoKeySource),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Why a header did not parse: an `alg` the crate does not know (`none`, ...) or no JOSE header.
fn unparsed_header_reason(token: &str) -> Reason {
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|value| value["alg"].is_string());
    if alg { Reason::AlgorithmNotAllowed } else { Reason::Malformed }
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    #[serde(default)]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    jti: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    jti: Option<serde_json::Value>,
}

impl Authenticator {
    /// The authenticator the settings ask for: `None` when `auth.mode = "off"` (which the
    /// settings refuse in production; warned about here). Local key set files are read now.
    pub fn from_settings(settings: &Settings) -> Result<Option<Authenticator>, AuthConfigError> {
        if settings.auth.mode == AuthMode::Off {
            tracing::warn!(
                environment = settings.environment.as_str(),
                "auth.mode = off: EHR calls are NOT authenticated (acceptable for local development and tests only)"
            );
            return Ok(None);
        }
        let timeout = Duration::from_secs(settings.auth.jwks_fetch_timeout_seconds.get());
        let fetcher = HttpFetcher::new(timeout).map_err(|error| AuthConfigError::Client(error.to_string()))?;
        Authenticator::with_fetcher(settings, Arc::new(fetcher)).map(Some)
    }

    /// An authenticator whose key sets come through `fetcher` (tests replace the network).
    pub fn with_fetcher(settings: &Settings, fetcher: Arc<dyn JwksFetcher>) -> Result<Authenticator, AuthConfigError> {
        let auth = &settings.auth;
        let mut issuers = HashMap::new();
        let mut locations = HashSet::new();
        for issuer in &auth.issuers {
            issuers.insert(issuer.iss.clone(), issuer.clone());
            locations.extend(
                issuer
                    .jwks_url
                    .iter()
                    .chain(&issuer.jku_allowlist)
                    .map(|url| JwksLocation::Url(url.as_str().to_owned())),
            );
            locations.extend(issuer.jwks_file.iter().cloned().map(JwksLocation::File));
        }
        if issuers.is_empty() {
            tracing::warn!("auth.mode = jwt and no auth.issuers: every authenticated call will be refused with 401");
        }
        if settings.environment == Environment::Production && !settings.server.public_url.is_https() {
            tracing::warn!(
                public_url = %settings.server.public_url,
                "server.public_url is not https: tokens are checked against it (aud), so set it to the URL EHRs call"
            );
        }
        let keys = KeyCache::new(
            fetcher,
            locations,
            Duration::from_secs(auth.jwks_cache_ttl_seconds.get()),
            Duration::from_secs(auth.jwks_refresh_min_interval_seconds),
        );
        for issuer in issuers.values() {
            if let Some(path) = &issuer.jwks_file {
                let key_set_error = |error: String| AuthConfigError::KeySet {
                    iss: issuer.iss.clone(),
                    location: path.display().to_string(),
                    error,
                };
                let bytes = std::fs::read(path).map_err(|error| key_set_error(error.to_string()))?;
                let found = keys::parse_jwks(&bytes).map_err(key_set_error)?;
                if found.is_empty() {
                    return Err(key_set_error("no usable signature key with a kid".into()));
                }
                keys.preload(&JwksLocation::File(path.clone()), found);
            }
        }
        Ok(Authenticator {
            issuers,
            keys,
            replay: ReplayCache::new(auth.replay_cache_capacity.get()),
            shared_replay: None,
            public_url: settings.server.public_url.as_str().trim_end_matches('/').to_owned(),
            skew: auth.clock_skew_seconds.seconds() as i64,
        })
    }

    /// Shares the `jti`s of accepted tokens with every replica on the same PostgreSQL database
    /// (`auth_jti`), besides this process's cache.
    pub fn with_shared_replays(mut self, store: crate::store::Store) -> Authenticator {
        self.shared_replay = Some(store);
        self
    }

    /// Verifies the `Authorization` header of a request to `path`. `None` is a refusal, logged
    /// here (reason, `iss`, `kid`, `jti`), to be answered with the one fixed 401.
    pub async fn authenticate(&self, authorization: Option<&[u8]>, path: &str) -> Option<AuthenticatedClient> {
        match self.verify(authorization, path).await {
            Ok(client) => Some(client),
            Err(failure) => {
                // The iss only when it is a trusted issuer's; kid and jti only when they pass the
                // sanitiser; the path is the request span's (rebuilt from the route).
                let iss = failure.iss.as_deref().map(|iss| if self.issuers.contains_key(iss) { iss } else { INVALID });
                tracing::warn!(
                    reason = failure.reason.as_str(),
                    iss,
                    kid = failure.kid.as_deref().map(loggable_id),
                    jti = failure.jti.as_deref().map(loggable_id),
                    "authentication failed"
                );
                None
            }
        }
    }

    /// The checks of the module documentation, in order.
    pub async fn verify(&self, authorization: Option<&[u8]>, path: &str) -> Result<AuthenticatedClient, AuthFailure> {
        let header = authorization.ok_or(AuthFailure::new(Reason::MissingHeader))?;
        if header.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::new(Reason::Malformed));
        }
        let header = std::str::from_utf8(header).map_err(|_| AuthFailure::new(Reason::NotBearer))?;
        let token = match header.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthFailure::new(Reason::NotBearer)),
        };
        if token.is_empty() || token.split('.').count() != 3 {
            return Err(AuthFailure::new(Reason::Malformed));
        }

        // The header: `alg: none` and unknown algorithms do not even parse.
        let jws_header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::new(unparsed_header_reason(token)))?;
        let mut seen = AuthFailure::new(Reason::Malformed);
        seen.kid = jws_header.kid.clone();
        if !ALGORITHMS.contains(&jws_header.alg) {
            return Err(seen.because(Reason::AlgorithmNotAllowed));
        }
        if !jws_header.typ.as_deref().is_some_and(|typ| typ.eq_ignore_ascii_case("JWT")) {
            return Err(seen.because(Reason::NotJwtType));
        }
        if jws_header.crit.is_some() {
            return Err(seen.because(Reason::CriticalHeader));
        }
        let Some(kid) = jws_header.kid.as_deref().filter(|kid| !kid.is_empty()) else {
            return Err(seen.because(Reason::MissingKid));
        };

        // The issuer, read before the signature only to choose the keys; checked again after.
        let unverified: UnverifiedClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| seen.because(Reason::Malformed))?;
        seen.jti = unverified.jti.as_ref().and_then(serde_json::Value::as_str).map(str::to_owned);
        let iss = match unverified.iss {
            Some(serde_json::Value::String(iss)) => iss,
            _ => return Err(seen.because(Reason::MissingIssuer)),
        };
        seen.iss = Some(iss.clone());
        let Some(issuer) = self.issuers.get(&iss) else {
            return Err(seen.because(Reason::UnknownIssuer));
        };
        let location = key_location(issuer, jws_header.jku.as_deref()).map_err(|reason| seen.because(reason))?;
        let key = self.keys.key(&location, kid).await.map_err(|error| {
            seen.because(match error {
                KeyError::UnknownKid => Reason::UnknownKid,
                KeyError::Unavailable | KeyError::NotConfigured => Reason::KeysUnavailable,
            })
        })?;
        if !key.fits(jws_header.alg) {
            return Err(seen.because(Reason::KeyDoesNotFitAlgorithm));
        }

        // The signature and the registered claims.
        let audience = format!("{}{path}", self.public_url);
        let mut validation = Validation::new(jws_header.alg);
        validation.leeway = self.skew.unsigned_abs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[iss.as_str()]);
        validation.set_audience(&[audience.as_str()]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| {
                seen.because(match error.kind() {
                    ErrorKind::InvalidSignature => Reason::BadSignature,
                    ErrorKind::ExpiredSignature => Reason::Expired,
                    ErrorKind::ImmatureSignature => Reason::NotYetValid,
                    ErrorKind::InvalidIssuer => Reason::WrongIssuer,
                    ErrorKind::InvalidAudience => Reason::WrongAudience,
                    ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
                        Reason::MissingClaim
                    }
                    ErrorKind::InvalidAlgorithm => Reason::KeyDoesNotFitAlgorithm,
                    _ => Reason::Malformed,
                })
            })?
            .claims;

        // What the crate does not check: iat, the lifetime, the jti.
        let now = now();
        let (Some(exp), Some(iat)) = (claims.exp, claims.iat) else {
            return Err(seen.because(Reason::MissingClaim));
        };
        let (exp, iat) = (exp.floor() as i64, iat.floor() as i64);
        if iat > now + self.skew {
            return Err(seen.because(Reason::IssuedInTheFuture));
        }
        if exp.saturating_sub(iat) > MAX_TOKEN_LIFETIME_SECONDS || exp < iat {
            return Err(seen.because(Reason::LivesTooLong));
        }
        let jti = match claims.jti {
            Some(serde_json::Value::String(jti)) if !jti.is_empty() && jti.chars().count() <= MAX_JTI_CHARS => jti,
            _ => return Err(seen.because(Reason::MissingJti)),
        };
        self.replay.check_and_remember(&iss, &jti, exp + self.skew, now).map_err(|error| {
            seen.because(match error {
                ReplayError::Replayed => Reason::Replayed,
                ReplayError::Full => Reason::ReplayCacheFull,
            })
        })?;
        if let Some(store) = &self.shared_replay {
            let shared =
                tokio::time::timeout(SHARED_REPLAY_TIMEOUT, store.remember_jti(&iss, &jti, exp + self.skew, now));
            match shared.await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return Err(seen.because(Reason::Replayed)),
                // The shared table is out of reach: this process's cache still refuses what it
                // has seen; another replica's token may pass until the database is back.
                Ok(Err(error)) => {
                    tracing::warn!(error.detail = %error, "the shared jti table is unavailable: replays checked by this replica only")
                }
                Err(_) => {
                    tracing::warn!("the shared jti table did not answer in time: replays checked by this replica only")
                }
            }
        }
        Ok(AuthenticatedClient { iss })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::configuration::KeySetUrl;

    fn issuer(jwks_url: Option<&str>, jwks_file: Option<&str>, allowlist: &[&str]) -> TrustedIssuer {
        TrustedIssuer {
            iss: "https://ehr.example.org".into(),
            jwks_url: jwks_url.map(|url| KeySetUrl::try_from(url.to_owned()).expect("a key set URL")),
            jwks_file: jwks_file.map(PathBuf::from),
            jku_allowlist: allowlist
                .iter()
                .map(|url| KeySetUrl::try_from((*url).to_owned()).expect("a key set URL"))
                .collect(),
        }
    }

    const CONFIGURED: &str = "https://ehr.example.org/jwks.json";
    const LISTED: &str = "https://ehr.example.org/listed.json";
    const STRANGER: &str = "https://attacker.example.com/jwks.json";

    #[test]
    fn a_jku_on_the_allowlist_is_where_the_keys_come_from() {
        let location = key_location(&issuer(Some(CONFIGURED), None, &[LISTED]), Some(LISTED));
        assert_eq!(location, Ok(JwksLocation::Url(LISTED.into())));
    }

    #[test]
    fn a_jku_not_on_the_allowlist_is_ignored_for_an_issuer_with_configured_keys() {
        assert_eq!(
            key_location(&issuer(Some(CONFIGURED), None, &[LISTED]), Some(STRANGER)),
            Ok(JwksLocation::Url(CONFIGURED.into()))
        );
        assert_eq!(
            key_location(&issuer(None, Some("/etc/popliteal/ehr.json"), &[]), Some(STRANGER)),
            Ok(JwksLocation::File("/etc/popliteal/ehr.json".into()))
        );
    }

    #[test]
    fn a_jku_not_on_the_allowlist_is_refused_for_an_issuer_with_only_an_allowlist() {
        assert_eq!(key_location(&issuer(None, None, &[LISTED]), Some(STRANGER)), Err(Reason::JkuNotAllowed));
        assert_eq!(key_location(&issuer(None, None, &[LISTED]), None), Err(Reason::NoKeySource));
    }
}
