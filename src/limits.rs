//! Limits that keep one client from taking the service down: JSON nesting depth, and a request
//! rate per client (a token bucket per `iss`, or per IP address before authentication). The body
//! size limit is `body::read_json_body`'s.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Whether a JSON text nests arrays and objects deeper than `max_depth` (the top-level value
/// counts as one level). Reads bytes only, so it is safe to run before parsing.
pub fn json_depth_exceeds(body: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                // Jump over the string (most of a FHIR body: narratives, codes) to its closing
                // quote, skipping escaped characters.
                at += 1;
                loop {
                    let Some(offset) = memchr::memchr2(b'"', b'\\', &body[at..]) else {
                        return false; // an unterminated string: the parser reports it
                    };
                    at += offset;
                    if body[at] == b'"' {
                        break;
                    }
                    at = (at + 2).min(body.len());
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// The deepest nesting serde_json parses (its recursion limit of 128 stops at the 128th level):
/// a configured depth above it would never be reached.
pub const SERDE_JSON_MAX_DEPTH: usize = 127;

/// A token bucket per client: `burst` requests at once, refilled at `rate` per second.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_client: HashMap<String, Bucket>,
    next_sweep: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// At most this many clients are tracked; buckets that have refilled are swept first, and a new
/// client beyond it is limited (the log says so) rather than letting the table grow.
const MAX_CLIENTS: usize = 100_000;
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl RateLimiter {
    pub fn new(requests_per_second: NonZeroU32, burst: NonZeroU32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(requests_per_second.get()),
            burst: f64::from(burst.get()),
            buckets: Mutex::new(Buckets { by_client: HashMap::new(), next_sweep: Instant::now() + SWEEP_EVERY }),
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until one is available.
    pub fn check(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= buckets.next_sweep || buckets.by_client.len() >= MAX_CLIENTS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.by_client.retain(|_, bucket| {
                bucket.tokens + rate * now.saturating_duration_since(bucket.updated).as_secs_f64() < burst
            });
            buckets.next_sweep = now + SWEEP_EVERY;
        }
        let full = Bucket { tokens: self.burst, updated: now };
        if buckets.by_client.len() >= MAX_CLIENTS && !buckets.by_client.contains_key(client) {
            tracing::warn!(clients = MAX_CLIENTS, "rate limiter full; a new client is refused");
            return Err(Duration::from_secs(1));
        }
        let bucket = buckets.by_client.entry(client.to_owned()).or_insert(full);
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_up_to_the_limit_passes_and_beyond_it_does_not() {
        assert!(!json_depth_exceeds(nested(64).as_bytes(), 64));
        assert!(json_depth_exceeds(nested(65).as_bytes(), 64));
        assert!(!json_depth_exceeds(br#"{"a": {"b": [1, {"c": 2}]}}"#, 4));
        assert!(json_depth_exceeds(br#"{"a": {"b": [1, {"c": 2}]}}"#, 3));
    }

    #[test]
    fn escaped_quotes_and_backslashes_do_not_end_a_string() {
        // ["a \" [[[... \\", "{{{..."]: the brackets are inside the strings.
        let inside = format!(r#"["a \" {} \\", "{}"]"#, "[".repeat(10), "{".repeat(10));
        assert!(!json_depth_exceeds(inside.as_bytes(), 1));
        // ["\\", [[[: the string ends after the escaped backslash, the brackets count.
        let after = format!(r#"["\\", {}]"#, "[".repeat(3));
        assert!(json_depth_exceeds(after.as_bytes(), 3));
        for truncated in [r#"["abc"#, r#"["abc\"#, r#""\"#] {
            assert!(!json_depth_exceeds(truncated.as_bytes(), 1), "{truncated}");
        }
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(!json_depth_exceeds(text.as_bytes(), 1));
    }

    #[test]
    fn serde_json_alone_would_stop_at_its_own_recursion_limit() {
        let too_deep = nested(SERDE_JSON_MAX_DEPTH + 1);
        assert!(serde_json::from_str::<serde_json::Value>(&too_deep).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(SERDE_JSON_MAX_DEPTH)).is_ok());
    }

    fn per_second(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("positive")
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_rate() {
        let limiter = RateLimiter::new(per_second(2), per_second(3));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("ehr", start), Ok(()));
        }
        let wait = limiter.check("ehr", start).expect_err("the burst is spent");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(limiter.check("ehr", start + Duration::from_millis(500)), Ok(()));
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let limiter = RateLimiter::new(NonZeroU32::MIN, NonZeroU32::MIN);
        let now = Instant::now();
        assert_eq!(limiter.check("ehr-1", now), Ok(()));
        assert!(limiter.check("ehr-1", now).is_err());
        assert_eq!(limiter.check("ehr-2", now), Ok(()));
    }
}
