//! Trusted issuers' public keys: JWK Sets from a URL (an issuer's `jwks_url` or an allowlisted
//! `jku`) or a local file, cached with a TTL and fetched again when a token names an unknown
//! `kid` (at most once per `jwks_refresh_min_interval_seconds` per key set).
//!
//! Only the key sets named in the configuration are ever fetched, so the cache is bounded by the
//! configuration. Fetching sits behind [`JwksFetcher`] so tests can replace it. A failed refresh
//! keeps the keys already known.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Where a key set comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksLocation {
    Url(String),
    File(PathBuf),
}

impl fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksLocation::Url(url) => f.write_str(url),
            JwksLocation::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// A key set fetch that failed; the text is for the log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>>;

/// Reads the bytes of a key set.
pub trait JwksFetcher: Send + Sync {
    fn fetch<'a>(&'a self, location: &'a JwksLocation) -> FetchFuture<'a>;
}

/// Larger key sets are refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Fetches over HTTPS (reqwest, rustls) without following redirects, and reads files.
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    pub fn new(timeout: Duration) -> Result<HttpFetcher, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("popliteal/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpFetcher { client })
    }

    async fn fetch_url(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|error| FetchError(format!("request failed: {error}")))?;
        if !response.status().is_success() {
            return Err(FetchError(format!("answered {}", response.status())));
        }
        if response.content_length().is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
            return Err(FetchError(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| FetchError(format!("read failed: {error}")))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl JwksFetcher for HttpFetcher {
    fn fetch<'a>(&'a self, location: &'a JwksLocation) -> FetchFuture<'a> {
        Box::pin(async move {
            match location {
                JwksLocation::Url(url) => self.fetch_url(url).await,
                JwksLocation::File(path) => {
                    let path = path.clone();
                    actix_web::rt::task::spawn_blocking(move || std::fs::read(path))
                        .await
                        .map_err(|error| FetchError(format!("read failed: {error}")))?
                        .map_err(|error| FetchError(format!("read failed: {error}")))
                }
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
}

/// A public key from a key set, with what it may verify.
pub struct VerificationKey {
    pub key: DecodingKey,
    kind: KeyKind,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
}

impl VerificationKey {
    /// Whether this key may verify a signature made with `alg` (key type and curve match, and
    /// the JWK's `alg`, when present, is `alg`).
    pub fn fits(&self, alg: Algorithm) -> bool {
        let kind = match alg {
            Algorithm::ES256 => KeyKind::P256,
            Algorithm::ES384 => KeyKind::P384,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            _ => return false,
        };
        kind == self.kind && self.alg.is_none_or(|own| own == alg)
    }
}

/// RSA keys shorter than this are not used.
const MIN_RSA_MODULUS_BYTES: usize = 256;

fn verification_key(value: serde_json::Value) -> Result<(String, VerificationKey), &'static str> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "not a JWK this service reads")?;
    let kid = jwk.common.key_id.clone().filter(|kid| !kid.is_empty()).ok_or("no kid")?;
    if jwk.common.public_key_use.as_ref().is_some_and(|key_use| *key_use != PublicKeyUse::Signature) {
        return Err("not a signature key");
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(Algorithm::from_str(&alg.to_string()).map_err(|_| "an alg that is not a signature")?),
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .map_err(|_| "an unreadable RSA modulus")?;
            let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("an RSA key shorter than 2048 bits");
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return Err("an unsupported curve"),
        },
        _ => return Err("not an RSA or EC public key"),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "an unreadable public key")?;
    Ok((kid, VerificationKey { key, kind, alg }))
}

/// The usable signature keys of a JWK Set, by `kid`. Keys this service cannot use (encryption
/// keys, symmetric keys, other curves, short RSA keys, no `kid`) are skipped; a `kid` that comes
/// twice is ambiguous and dropped.
pub fn parse_jwks(bytes: &[u8]) -> Result<HashMap<String, Arc<VerificationKey>>, String> {
    #[derive(serde::Deserialize)]
    struct KeySet {
        keys: Vec<serde_json::Value>,
    }
    let set: KeySet = serde_json::from_slice(bytes).map_err(|_| "not a JWK Set (an object with keys)".to_owned())?;
    let mut keys = HashMap::new();
    let mut duplicates = Vec::new();
    for value in set.keys {
        match verification_key(value) {
            Ok((kid, key)) => {
                if keys.insert(kid.clone(), Arc::new(key)).is_some() {
                    duplicates.push(kid);
                }
            }
            Err(why) => tracing::debug!(why, "a key of a key set is skipped"),
        }
    }
    for kid in duplicates {
        keys.remove(&kid);
    }
    Ok(keys)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The configuration names no such key set.
    NotConfigured,
    /// The key set (fetched) has no usable key with this `kid`.
    UnknownKid,
    /// The key set could not be fetched yet.
    Unavailable,
}

#[derive(Default)]
struct SlotState {
    keys: HashMap<String, Arc<VerificationKey>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// One fetch at a time per key set; others wait and then read its result.
    refreshing: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The key sets of the configured issuers.
pub struct KeyCache {
    fetcher: Arc<dyn JwksFetcher>,
    ttl: Duration,
    min_refresh_interval: Duration,
    slots: HashMap<JwksLocation, Slot>,
}

impl KeyCache {
    pub fn new(
        fetcher: Arc<dyn JwksFetcher>,
        locations: impl IntoIterator<Item = JwksLocation>,
        ttl: Duration,
        min_refresh_interval: Duration,
    ) -> KeyCache {
        let slots = locations.into_iter().map(|location| (location, Slot::default())).collect();
        KeyCache { fetcher, ttl, min_refresh_interval, slots }
    }

    /// Installs a key set read at start (a local file), as if just fetched.
    pub fn preload(&self, location: &JwksLocation, keys: HashMap<String, Arc<VerificationKey>>) {
        if let Some(slot) = self.slots.get(location) {
            let now = Instant::now();
            let mut state = slot.state();
            state.keys = keys;
            state.fetched_at = Some(now);
            state.last_attempt = Some(now);
        }
    }

    /// The key `kid` of the key set at `location`: from the cache while it is fresh, else
    /// fetched again (an unknown `kid` triggers a fetch at most once per minimum interval).
    pub async fn key(&self, location: &JwksLocation, kid: &str) -> Result<Arc<VerificationKey>, KeyError> {
        let slot = self.slots.get(location).ok_or(KeyError::NotConfigured)?;
        if let Some(key) = self.fresh_key(slot, kid) {
            return Ok(key);
        }
        let _one_fetch_at_a_time = slot.refreshing.lock().await;
        let may_fetch = {
            // Another request may have fetched while this one waited.
            if let Some(key) = self.fresh_key(slot, kid) {
                return Ok(key);
            }
            let mut state = slot.state();
            let now = Instant::now();
            let may_fetch = state.last_attempt.is_none_or(|last| now.duration_since(last) >= self.min_refresh_interval);
            if may_fetch {
                state.last_attempt = Some(now);
            }
            may_fetch
        };
        if may_fetch {
            let fetched =
                self.fetcher.fetch(location).await.map_err(|error| error.0).and_then(|bytes| parse_jwks(&bytes));
            match fetched {
                Ok(keys) => {
                    tracing::info!(key_set = %location, keys = keys.len(), "key set fetched");
                    let mut state = slot.state();
                    state.keys = keys;
                    state.fetched_at = Some(Instant::now());
                }
                Err(error) => tracing::warn!(key_set = %location, %error, "key set fetch failed; known keys kept"),
            }
        }
        let state = slot.state();
        match state.keys.get(kid) {
            Some(key) => Ok(Arc::clone(key)),
            None if state.fetched_at.is_some() => Err(KeyError::UnknownKid),
            None => Err(KeyError::Unavailable),
        }
    }

    fn fresh_key(&self, slot: &Slot, kid: &str) -> Option<Arc<VerificationKey>> {
        let state = slot.state();
        let fresh = state.fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
        if fresh { state.keys.get(kid).cloned() } else { None }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::EncodingKey;
    use p384::pkcs8::EncodePrivateKey;

    use super::*;

    fn p384_jwk(kid: &str) -> serde_json::Value {
        let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret.to_pkcs8_der().expect("a PKCS#8 key");
        let key = EncodingKey::from_ec_der(der.as_bytes());
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES384).expect("a JWK")).expect("serialisable");
        jwk["kid"] = serde_json::json!(kid);
        jwk
    }

    /// Serves whatever key set it holds and counts fetches.
    struct FakeFetcher {
        keys: Mutex<Vec<serde_json::Value>>,
        fetches: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl FakeFetcher {
        fn new(keys: Vec<serde_json::Value>) -> Arc<FakeFetcher> {
            Arc::new(FakeFetcher { keys: Mutex::new(keys), fetches: AtomicUsize::new(0), fail: false.into() })
        }
        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl JwksFetcher for FakeFetcher {
        fn fetch<'a>(&'a self, _location: &'a JwksLocation) -> FetchFuture<'a> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let result = if self.fail.load(Ordering::SeqCst) {
                Err(FetchError("down".into()))
            } else {
                let keys = self.keys.lock().expect("not poisoned").clone();
                Ok(serde_json::to_vec(&serde_json::json!({ "keys": keys })).expect("serialisable"))
            };
            Box::pin(async move { result })
        }
    }

    fn location() -> JwksLocation {
        JwksLocation::Url("https://ehr.example.org/jwks.json".into())
    }

    fn cache(fetcher: Arc<FakeFetcher>, ttl: u64, min_interval: u64) -> KeyCache {
        KeyCache::new(fetcher, [location()], Duration::from_secs(ttl), Duration::from_secs(min_interval))
    }

    #[actix_web::test]
    async fn a_key_set_is_fetched_once_and_then_served_from_the_cache() {
        let fetcher = FakeFetcher::new(vec![p384_jwk("a")]);
        let keys = cache(fetcher.clone(), 3600, 0);
        assert!(keys.key(&location(), "a").await.is_ok_and(|key| key.fits(Algorithm::ES384)));
        assert!(keys.key(&location(), "a").await.is_ok());
        assert_eq!(fetcher.fetches(), 1);
    }

    #[actix_web::test]
    async fn an_unknown_kid_fetches_the_key_set_again() {
        let fetcher = FakeFetcher::new(vec![p384_jwk("a")]);
        let keys = cache(fetcher.clone(), 3600, 0);
        assert!(keys.key(&location(), "a").await.is_ok());
        fetcher.keys.lock().expect("not poisoned").push(p384_jwk("b"));
        assert!(keys.key(&location(), "b").await.is_ok());
        assert_eq!(fetcher.fetches(), 2);
    }

    #[actix_web::test]
    async fn unknown_kids_fetch_at_most_once_per_minimum_interval() {
        let fetcher = FakeFetcher::new(vec![p384_jwk("a")]);
        let keys = cache(fetcher.clone(), 3600, 60);
        assert!(keys.key(&location(), "a").await.is_ok());
        for kid in ["x", "y", "z"] {
            assert_eq!(keys.key(&location(), kid).await.err(), Some(KeyError::UnknownKid));
        }
        assert_eq!(fetcher.fetches(), 1);
    }

    #[actix_web::test]
    async fn a_stale_key_set_is_fetched_again_and_kept_when_the_fetch_fails() {
        let fetcher = FakeFetcher::new(vec![p384_jwk("a")]);
        let keys = cache(fetcher.clone(), 0, 0);
        assert!(keys.key(&location(), "a").await.is_ok());
        fetcher.fail.store(true, Ordering::SeqCst);
        assert!(keys.key(&location(), "a").await.is_ok(), "the known key is kept");
        assert_eq!(fetcher.fetches(), 2);
    }

    #[actix_web::test]
    async fn a_key_set_that_cannot_be_fetched_is_unavailable_and_unconfigured_ones_are_never_fetched() {
        let fetcher = FakeFetcher::new(vec![]);
        fetcher.fail.store(true, Ordering::SeqCst);
        let keys = cache(fetcher.clone(), 3600, 0);
        assert_eq!(keys.key(&location(), "a").await.err(), Some(KeyError::Unavailable));
        let elsewhere = JwksLocation::Url("https://attacker.example/jwks.json".into());
        assert_eq!(keys.key(&elsewhere, "a").await.err(), Some(KeyError::NotConfigured));
        assert_eq!(fetcher.fetches(), 1);
    }

    #[test]
    fn keys_this_service_cannot_use_are_skipped() {
        let mut encryption = p384_jwk("enc");
        encryption["use"] = serde_json::json!("enc");
        let mut no_kid = p384_jwk("x");
        no_kid.as_object_mut().expect("object").remove("kid");
        let symmetric = serde_json::json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" });
        let short_rsa = serde_json::json!({ "kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB" });
        let unknown = serde_json::json!({ "kty": "OKP", "kid": "ed", "crv": "X25519", "x": "AAAA" });
        let twice = p384_jwk("twice");
        let bytes = serde_json::to_vec(&serde_json::json!({
            "keys": [p384_jwk("good"), encryption, no_kid, symmetric, short_rsa, unknown, twice.clone(), twice]
        }))
        .expect("serialisable");
        let keys = parse_jwks(&bytes).expect("a key set");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
    }

    #[test]
    fn a_p384_key_fits_es384_only() {
        let bytes = serde_json::to_vec(&serde_json::json!({ "keys": [p384_jwk("a")] })).expect("serialisable");
        let keys = parse_jwks(&bytes).expect("a key set");
        let key = &keys["a"];
        assert!(key.fits(Algorithm::ES384));
        for alg in [Algorithm::ES256, Algorithm::RS384, Algorithm::HS384, Algorithm::PS384] {
            assert!(!key.fits(alg), "{alg:?}");
        }
    }
}
