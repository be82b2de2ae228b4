//! Which browser origins may call the service (CORS), from `cors.allowed_origins` and
//! `cors.allow_loopback_origins`, and the actix-cors middleware that enforces it.
//!
//! One predicate, [`OriginPolicy::allows`], decides: actix-cors asks it (its `allowed_origin_fn`),
//! and the error policy asks it again to say why a browser call was refused. Origins are compared
//! exactly; a loopback origin is parsed, never matched by prefix (`http://localhost.evil.com` is
//! not loopback).

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use actix_cors::Cors;
use actix_web::http::header;

use crate::configuration::{CorsOrigin, CorsSettings, Environment, HttpUrl};

/// The diagnostics of a refused browser call: says why, never which origin was sent.
pub const ORIGIN_NOT_ALLOWED: &str = "The request's Origin is not allowed by this service's CORS settings \
     (cors.allowed_origins, cors.allow_loopback_origins).";

/// The origins allowed to call from a browser.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    any: bool,
    listed: HashSet<String>,
    loopback: bool,
}

/// Whether `origin` is a bare http origin on this machine: `http://localhost[:port]`,
/// `http://127.0.0.1[:port]` or `http://[::1][:port]`, exactly as a browser sends it.
pub fn is_loopback_origin(origin: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let bare = url.origin().ascii_serialization() == origin;
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        None => false,
    };
    bare && loopback && url.scheme() == "http"
}

impl OriginPolicy {
    /// The policy the settings describe (each listed origin is a bare origin or `*`: the
    /// settings parse them so; loopback origins in production are refused when the settings are
    /// loaded, by [`check`]), plus the service's own origin (`public_url`'s): browsers send
    /// `Origin` on a same-origin POST too, which the intake app's pages make.
    pub fn from_settings(settings: &CorsSettings, public_url: &HttpUrl) -> OriginPolicy {
        let own = url::Url::parse(public_url.as_str()).map(|url| url.origin().ascii_serialization());
        OriginPolicy {
            any: settings.allowed_origins.contains(&CorsOrigin::Any),
            listed: settings
                .allowed_origins
                .iter()
                .filter_map(|origin| match origin {
                    CorsOrigin::Any => None,
                    CorsOrigin::Exactly(origin) => Some(origin.as_str().to_owned()),
                })
                .chain(own)
                .collect(),
            loopback: settings.allow_loopback_origins,
        }
    }

    /// Whether a browser on `origin` may call the service.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        self.any || self.listed.contains(origin) || (self.loopback && is_loopback_origin(origin))
    }

    /// The CORS middleware: `Authorization` and `Content-Type` allowed, preflights answered, a
    /// call from another origin refused (400, made an OperationOutcome by the error policy).
    pub fn middleware(&self) -> Cors {
        let policy = self.clone();
        Cors::default()
            .allowed_origin_fn(move |origin, _| policy.allows(origin.as_bytes()))
            .allowed_methods(["GET", "POST", "OPTIONS"])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(3600)
    }
}

/// The rules of the `[cors]` section a type cannot say, checked when the settings are loaded.
pub fn check(settings: &CorsSettings, environment: Environment) -> Result<(), String> {
    if settings.allow_loopback_origins && environment == Environment::Production {
        return Err("cors.allow_loopback_origins = true is refused in production: list the origins in \
                    cors.allowed_origins"
            .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(origins: &[&str]) -> Vec<CorsOrigin> {
        origins.iter().map(|o| CorsOrigin::try_from((*o).to_owned()).expect("an origin")).collect()
    }

    fn policy(listed: &[&str], loopback: bool) -> OriginPolicy {
        let public_url = HttpUrl::try_from("https://cds.example.org/base".to_owned()).expect("a URL");
        OriginPolicy::from_settings(
            &CorsSettings { allowed_origins: origins(listed), allow_loopback_origins: loopback },
            &public_url,
        )
    }

    #[test]
    fn the_service_s_own_origin_is_allowed_for_the_intake_app_s_same_origin_calls() {
        let policy = policy(&["https://sandbox.cds-hooks.org"], false);
        assert!(policy.allows(b"https://cds.example.org"));
        assert!(!policy.allows(b"https://cds.example.org.evil.com"));
    }

    #[test]
    fn loopback_origins_on_any_port_are_loopback() {
        for origin in ["http://localhost:8093", "http://127.0.0.1:8093", "http://[::1]:3000", "http://localhost"] {
            assert!(is_loopback_origin(origin), "{origin}");
        }
    }

    #[test]
    fn look_alikes_of_loopback_are_not_loopback() {
        for origin in [
            "http://localhost.evil.com",
            "http://localhost.evil.com:8093",
            "http://127.0.0.1.nip.io:8093",
            "http://evil.com#http://localhost:1",
            "http://localhost:8093/",
            "http://localhost:8093/path",
            "http://user@localhost:8093",
            "https://localhost:8093",
            "http://127.0.0.2:8093",
            "http://127.1:8093",
            "http://LOCALHOST:8093",
            "http://0.0.0.0:8093",
            "null",
            "",
        ] {
            assert!(!is_loopback_origin(origin), "{origin}");
        }
    }

    #[test]
    fn loopback_origins_are_allowed_only_when_the_setting_says_so() {
        let origin = b"http://127.0.0.1:8093";
        assert!(policy(&["https://sandbox.cds-hooks.org"], true).allows(origin));
        assert!(!policy(&["https://sandbox.cds-hooks.org"], false).allows(origin));
        assert!(policy(&["http://127.0.0.1:8093"], false).allows(origin));
        assert!(!policy(&["http://127.0.0.1:8094"], false).allows(origin));
    }

    #[test]
    fn listed_origins_are_compared_exactly_and_a_star_allows_any() {
        let sandbox = policy(&["https://sandbox.cds-hooks.org"], true);
        assert!(sandbox.allows(b"https://sandbox.cds-hooks.org"));
        assert!(!sandbox.allows(b"https://sandbox.cds-hooks.org.evil.com"));
        assert!(!sandbox.allows(b"http://sandbox.cds-hooks.org"));
        assert!(!sandbox.allows(b"\xff\xfe"));
        assert!(policy(&["*"], false).allows(b"https://anywhere.example.com"));
    }

    #[test]
    fn production_refuses_loopback_origins_and_a_listed_origin_must_be_bare() {
        let settings = |listed: &[&str], loopback| CorsSettings {
            allowed_origins: origins(listed),
            allow_loopback_origins: loopback,
        };
        let error = check(&settings(&[], true), Environment::Production).expect_err("refused");
        assert!(error.contains("cors.allow_loopback_origins"), "{error}");
        assert!(check(&settings(&[], true), Environment::Local).is_ok());
        assert!(check(&settings(&[], false), Environment::Production).is_ok());
        // A listed origin is parsed when the settings load: one with a path never gets here.
        let error = CorsOrigin::try_from("https://a.example.org/app".to_owned()).expect_err("refused");
        assert!(error.contains("not an origin"), "{error}");
    }
}
