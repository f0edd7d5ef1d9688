//! The pure decision logic of the retry layer: which requests may be retried, how long
//! to wait, and whether a retry still fits before the deadline. No I/O, no clock: the
//! service passes the time in.

use std::{
    cell::Cell,
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    time::{Duration, SystemTime},
};

use http::{HeaderMap, HeaderName, Method};

/// When non-idempotent requests (POST, PATCH, and any method outside RFC 9110's
/// idempotent set) may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum NonIdempotent {
    /// Never.
    Never,
    /// Only when the request carries an idempotency key header (default
    /// `Idempotency-Key`), which tells the upstream to deduplicate.
    #[default]
    WithIdempotencyKey,
    /// Always: the operator asserts the upstream tolerates duplicates.
    Always,
}

/// Whether a method is idempotent by RFC 9110 §9.2.2.
#[inline]
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a request with `method` and `headers` may be sent more than once.
#[inline]
pub fn method_allows_retry(
    method: &Method,
    headers: &HeaderMap,
    policy: NonIdempotent,
    key_header: &HeaderName,
) -> bool {
    if is_idempotent(method) {
        return true;
    }
    match policy {
        NonIdempotent::Never => false,
        NonIdempotent::Always => true,
        NonIdempotent::WithIdempotencyKey => headers
            .get(key_header)
            .is_some_and(|value| !value.as_bytes().is_empty()),
    }
}

/// Exponential backoff with full jitter: retry `n` (0 for the first retry) waits a
/// uniformly random time in `[0, min(cap, base * 2^n)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// A backoff with `base` and `cap` (the caller validates `0 < base <= cap`).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The upper bound of retry `n`'s delay: `min(cap, base * 2^n)`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// Retry `n`'s delay, with `random` a uniform value in `[0, 1]`.
    pub fn delay_with(&self, n: u32, random: f64) -> Duration {
        let ceiling = self.ceiling(n);
        ceiling.mul_f64(random.clamp(0.0, 1.0)).min(ceiling)
    }

    /// Retry `n`'s delay, jittered with a thread-local generator.
    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with(n, unit_random())
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish() | 1
}

/// A uniform value in `[0, 1]` from a thread-local xorshift64* generator (jitter needs
/// spread, not cryptographic strength).
pub fn unit_random() -> f64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        let out = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // 53 random bits -> [0, 1].
        (out >> 11) as f64 / ((1u64 << 53) - 1) as f64
    })
}

/// What the upstream asked for with `Retry-After` or `X-RateLimit-Reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerDelay {
    /// No usable header.
    None,
    /// Wait this long before retrying.
    Wait(Duration),
}

/// `X-RateLimit-Reset` values above this are Unix timestamps, below it delta-seconds.
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// Reads `Retry-After` (delta-seconds or HTTP-date) or, failing that,
/// `X-RateLimit-Reset` (delta-seconds, or a Unix timestamp when above 10^9) against the
/// wall clock `now`. Unparsable values are ignored; dates in the past mean "now".
pub fn server_delay(headers: &HeaderMap, now: SystemTime) -> ServerDelay {
    if let Some(value) = headers.get(http::header::RETRY_AFTER)
        && let Ok(text) = value.to_str()
    {
        let text = text.trim();
        if let Ok(secs) = text.parse::<u64>() {
            return ServerDelay::Wait(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(text) {
            return ServerDelay::Wait(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    if let Some(value) = headers.get("x-ratelimit-reset")
        && let Ok(text) = value.to_str()
        && let Ok(number) = text.trim().parse::<u64>()
    {
        if number > EPOCH_THRESHOLD {
            // A timestamp past what `SystemTime` can hold is "too far to wait", not a panic.
            return ServerDelay::Wait(
                match SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(number)) {
                    Some(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
                    None => Duration::MAX,
                },
            );
        }
        return ServerDelay::Wait(Duration::from_secs(number));
    }
    ServerDelay::None
}

/// Why a failed attempt is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The method is not safe to repeat.
    Method,
    /// The request body was larger than the replay buffer.
    BodyTooLarge,
    /// Reading the client's request body failed (it cannot be sent again).
    BodyFailed,
    /// `max_attempts` attempts were made.
    Attempts,
    /// The upstream asked to wait longer than `retry_after_cap`.
    ServerDelayTooLong,
    /// The wait would end at or after the overall deadline.
    Deadline,
    /// The retry budget is empty.
    Budget,
    /// The inner service was not ready at once.
    NotReady,
}

impl Stop {
    /// A stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Method => "method",
            Stop::BodyTooLarge => "body_too_large",
            Stop::BodyFailed => "body_failed",
            Stop::Attempts => "max_attempts",
            Stop::ServerDelayTooLong => "retry_after_too_long",
            Stop::Deadline => "deadline",
            Stop::Budget => "budget",
            Stop::NotReady => "not_ready",
        }
    }
}

/// Picks the wait before retry number `retry` (0-based), or why not to retry.
///
/// `attempts` is how many attempts were made so far; `server` what the upstream asked
/// for; `remaining` the time left before the overall deadline, if any. The budget is
/// checked by the caller after this says yes, so a refused retry costs no budget.
pub fn plan_retry(
    attempts: u32,
    max_attempts: u32,
    backoff: &Backoff,
    server: ServerDelay,
    retry_after_cap: Duration,
    remaining: Option<Duration>,
    random: f64,
) -> Result<Duration, Stop> {
    if attempts >= max_attempts {
        return Err(Stop::Attempts);
    }
    let delay = match server {
        ServerDelay::Wait(wait) if wait > retry_after_cap => return Err(Stop::ServerDelayTooLong),
        ServerDelay::Wait(wait) => wait,
        ServerDelay::None => backoff.delay_with(attempts.saturating_sub(1), random),
    };
    if let Some(remaining) = remaining
        && delay >= remaining
    {
        return Err(Stop::Deadline);
    }
    Ok(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn key() -> HeaderName {
        HeaderName::from_static("idempotency-key")
    }

    #[test]
    fn methods() {
        let empty = HeaderMap::new();
        let mut keyed = HeaderMap::new();
        keyed.insert("idempotency-key", HeaderValue::from_static("abc"));
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ] {
            assert!(method_allows_retry(
                &m,
                &empty,
                NonIdempotent::Never,
                &key()
            ));
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!method_allows_retry(
                &m,
                &empty,
                NonIdempotent::WithIdempotencyKey,
                &key()
            ));
            assert!(method_allows_retry(
                &m,
                &keyed,
                NonIdempotent::WithIdempotencyKey,
                &key()
            ));
            assert!(!method_allows_retry(
                &m,
                &keyed,
                NonIdempotent::Never,
                &key()
            ));
            assert!(method_allows_retry(
                &m,
                &empty,
                NonIdempotent::Always,
                &key()
            ));
        }
        let mut blank = HeaderMap::new();
        blank.insert("idempotency-key", HeaderValue::from_static(""));
        assert!(!method_allows_retry(
            &Method::POST,
            &blank,
            NonIdempotent::WithIdempotencyKey,
            &key()
        ));
    }

    #[test]
    fn backoff_ceiling_and_jitter_bounds() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(b.ceiling(0), Duration::from_millis(10));
        assert_eq!(b.ceiling(1), Duration::from_millis(20));
        assert_eq!(b.ceiling(3), Duration::from_millis(80));
        assert_eq!(b.ceiling(4), Duration::from_millis(100));
        assert_eq!(b.ceiling(200), Duration::from_millis(100));
        assert_eq!(b.delay_with(2, 0.0), Duration::ZERO);
        assert_eq!(b.delay_with(2, 1.0), Duration::from_millis(40));
        assert_eq!(b.delay_with(2, 0.5), Duration::from_millis(20));
        // Huge bases never overflow.
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
        for n in 0..12 {
            let ceiling = b.ceiling(n);
            let mut max_seen = Duration::ZERO;
            for _ in 0..2_000 {
                let d = b.delay(n);
                assert!(d <= ceiling, "retry {n}: {d:?} > {ceiling:?}");
                max_seen = max_seen.max(d);
            }
            // Full jitter spreads over the range, not only near zero.
            assert!(max_seen > ceiling / 2, "retry {n}: max {max_seen:?}");
        }
    }

    #[test]
    fn unit_random_in_range_and_varies() {
        let values: Vec<f64> = (0..1000).map(|_| unit_random()).collect();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(server_delay(&h, now), ServerDelay::None);
        h.insert("retry-after", HeaderValue::from_static("5"));
        assert_eq!(
            server_delay(&h, now),
            ServerDelay::Wait(Duration::from_secs(5))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        assert_eq!(
            server_delay(&h, now),
            ServerDelay::Wait(Duration::from_secs(7))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        h.insert("retry-after", HeaderValue::from_str(&past).unwrap());
        assert_eq!(server_delay(&h, now), ServerDelay::Wait(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(server_delay(&h, now), ServerDelay::None);
        h.insert("x-ratelimit-reset", HeaderValue::from_static("3"));
        assert_eq!(
            server_delay(&h, now),
            ServerDelay::Wait(Duration::from_secs(3))
        );
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1700000004"));
        assert_eq!(
            server_delay(&h, now),
            ServerDelay::Wait(Duration::from_secs(4))
        );
        // Regression (found by the retry_after fuzz target): a reset timestamp beyond
        // what SystemTime holds is an endless wait, not a panic.
        for huge in ["9223372036854775808", "18446744073709551615"] {
            h.insert("x-ratelimit-reset", HeaderValue::from_static(huge));
            assert_eq!(server_delay(&h, now), ServerDelay::Wait(Duration::MAX));
        }
        // Retry-After wins over X-RateLimit-Reset.
        h.insert("retry-after", HeaderValue::from_static("1"));
        assert_eq!(
            server_delay(&h, now),
            ServerDelay::Wait(Duration::from_secs(1))
        );
    }

    #[test]
    fn plan() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let cap = Duration::from_secs(10);
        assert_eq!(
            plan_retry(3, 3, &b, ServerDelay::None, cap, None, 0.5),
            Err(Stop::Attempts)
        );
        assert_eq!(
            plan_retry(1, 3, &b, ServerDelay::None, cap, None, 1.0),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(
            plan_retry(2, 3, &b, ServerDelay::None, cap, None, 1.0),
            Ok(Duration::from_millis(200))
        );
        // Retry-After: 5 with 2 s left: no retry.
        assert_eq!(
            plan_retry(
                1,
                3,
                &b,
                ServerDelay::Wait(Duration::from_secs(5)),
                cap,
                Some(Duration::from_secs(2)),
                0.5
            ),
            Err(Stop::Deadline)
        );
        assert_eq!(
            plan_retry(
                1,
                3,
                &b,
                ServerDelay::Wait(Duration::from_secs(11)),
                cap,
                None,
                0.5
            ),
            Err(Stop::ServerDelayTooLong)
        );
        assert_eq!(
            plan_retry(
                1,
                3,
                &b,
                ServerDelay::Wait(Duration::from_secs(5)),
                cap,
                Some(Duration::from_secs(6)),
                0.5
            ),
            Ok(Duration::from_secs(5))
        );
        // Backoff that would reach the deadline: no retry.
        assert_eq!(
            plan_retry(
                1,
                3,
                &b,
                ServerDelay::None,
                cap,
                Some(Duration::from_millis(50)),
                1.0
            ),
            Err(Stop::Deadline)
        );
    }
}
