//! `Retry-After` / `X-RateLimit-Reset` parsing (`gateway_layers_retry::policy`):
//! arbitrary header bytes never panic, a parsed delay is consistent with the header,
//! and `plan_retry` never waits past the cap or the deadline.
#![no_main]

use std::time::{Duration, SystemTime};

use gateway_layers_retry::policy::{Backoff, ServerDelay, plan_retry, server_delay};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = HeaderValue::from_bytes(rest) else {
        return;
    };
    let name = if selector & 1 == 0 {
        "retry-after"
    } else {
        "x-ratelimit-reset"
    };
    let mut headers = HeaderMap::new();
    headers.insert(name, value.clone());
    if selector & 2 != 0 && name == "retry-after" {
        // A second, unrelated header must not change a Retry-After answer.
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("7"));
    }
    // Wall clocks from the epoch to far in the future.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(selector) * 40_000_000);
    let delay = server_delay(&headers, now);
    if let (ServerDelay::Wait(wait), Ok(text)) = (delay, value.to_str()) {
        if let Ok(secs) = text.trim().parse::<u64>() {
            if name == "retry-after" || secs <= 1_000_000_000 {
                assert_eq!(wait, Duration::from_secs(secs));
            }
        }
    }
    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(2));
    let cap = Duration::from_secs(30);
    let remaining = (selector & 4 != 0).then(|| Duration::from_secs(5));
    for attempts in [0, 1, 2, 3, u32::MAX] {
        for random in [0.0, 0.5, 1.0] {
            if let Ok(wait) = plan_retry(attempts, 3, &backoff, delay, cap, remaining, random) {
                assert!(attempts < 3);
                assert!(wait <= cap.max(Duration::from_secs(2)));
                if let Some(remaining) = remaining {
                    assert!(wait < remaining);
                }
            }
        }
    }
});
