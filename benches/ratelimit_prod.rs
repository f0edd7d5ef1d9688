//! The rate-limit benchmark of `gateway-layers-ratelimit` (its
//! `benches/ratelimit.rs`, included unchanged), built in the facade package, whose
//! dependency graph does not switch on tokio's `test-util`: the clock measured here is
//! the one production builds have. Same groups, same callgrind mode
//! (`RATELIMIT_BENCH_VARIANT=<name> RATELIMIT_BENCH_CALLS=<n>`).
//!
//! Run: `cargo bench -p gateway-layers --bench ratelimit_prod -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)]

#[path = "../crates/gateway-layers-ratelimit/benches/ratelimit.rs"]
mod ratelimit;

fn main() {
    ratelimit::main();
}
