//! The local backend: a sharded, bounded map from (policy, key) to GCRA state.
//!
//! - **Sharded.** Keys are spread over [`SHARDS`] independently locked shards chosen by
//!   a hash seeded at random per store (foldhash, hashbrown's default) computed once
//!   per decision; the lock is held for one table probe and a few integer operations.
//!   There is no global lock. IPv4 keys under policies of one to four windows live
//!   in compact tables (8 bytes + 8 per window) so that many keys stay in cache; other
//!   keys use 64-byte entries.
//! - **Atomic across windows.** All windows of a key live in one entry and are
//!   decided under that entry's shard lock: either every window admits the request and
//!   is charged, or none is.
//! - **Bounded.** At most `max_keys` entries (split evenly over the shards). An entry is
//!   evicted only once every one of its windows has fully recovered (its state is then
//!   identical to a fresh key), so eviction can never hand a throttled client a fresh
//!   bucket. When a shard is full of keys that are still recovering, new keys of that
//!   shard are refused until the earliest of them recovers.
//! - **Self-cleaning.** Decisions sweep one shard every [`SWEEP_EVERY`] (round robin),
//!   dropping recovered entries and shrinking the table's allocation (tables of up to
//!   [`KEEP_SLOTS`] slots are kept); no background task and no user action are needed.

use std::{
    hash::{BuildHasher, Hash, Hasher},
    net::IpAddr,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use gateway_layers_core::Key;
use hashbrown::{DefaultHashBuilder, HashTable};
use tokio::time::Instant;

use crate::{
    Clock,
    gcra::{self, Verdict, Window},
};

/// Number of shards (a power of two).
pub(crate) const SHARDS: usize = 64;
/// How often, in the decisions' own time, one shard is swept.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(50);

/// A swept table keeps its allocation while it has at most this many slots (at most
/// 64 shards x 256 slots x 65 bytes, about 1 MiB, for the general tables; a quarter to
/// a half of that for each compact IPv4 table), so a small, steady key set whose keys
/// keep recovering and coming back is not freed and regrown at every sweep.
const KEEP_SLOTS: usize = 256;

/// Windows stored inline per key; policies with more windows use a heap slice.
const INLINE: usize = 3;

#[derive(Debug)]
enum Tats {
    Inline([u64; INLINE]),
    Heap(Box<[u64]>),
}

impl Tats {
    fn fresh(len: usize) -> Self {
        if len <= INLINE {
            Tats::Inline([0; INLINE])
        } else {
            Tats::Heap(vec![0; len].into_boxed_slice())
        }
    }

    fn slice_mut(&mut self, len: usize) -> &mut [u64] {
        match self {
            Tats::Inline(a) => &mut a[..len.min(INLINE)],
            Tats::Heap(b) => b,
        }
    }

    fn latest(&self) -> u64 {
        match self {
            Tats::Inline(a) => a.iter().copied().max().unwrap_or(0),
            Tats::Heap(b) => b.iter().copied().max().unwrap_or(0),
        }
    }
}

/// A key as stored: IP addresses inline, anything else boxed, so an entry fits one
/// cache line.
#[derive(Debug)]
enum StoredKey {
    V4([u8; 4]),
    V6([u8; 16]),
    Other(Box<Key>),
}

impl StoredKey {
    fn new(key: &Key) -> Self {
        match key {
            Key::Ip(IpAddr::V4(v4)) => Self::V4(v4.octets()),
            Key::Ip(IpAddr::V6(v6)) => Self::V6(v6.octets()),
            other => Self::Other(Box::new(other.clone())),
        }
    }

    #[inline]
    fn matches(&self, key: &Key) -> bool {
        match (self, key) {
            (Self::V4(a), Key::Ip(IpAddr::V4(b))) => *a == b.octets(),
            (Self::V6(a), Key::Ip(IpAddr::V6(b))) => *a == b.octets(),
            (Self::Other(a), b) => **a == *b,
            _ => false,
        }
    }
}

#[derive(Debug)]
#[repr(align(64))]
struct Entry {
    key: StoredKey,
    policy: u32,
    tats: Tats,
}

/// An IPv4 key under a policy of `N` (1 to 3) windows: 8 + 8 × `N` bytes, so the
/// common client-IP tables stay small enough to sit in cache (the general [`Entry`]
/// is a 64-byte line).
#[derive(Debug)]
struct V4Entry<const N: usize> {
    ip: u32,
    policy: u32,
    tats: [u64; N],
}

/// What the sweep and the resizes need of an entry.
trait Stored {
    /// The latest TAT: the entry has fully recovered once `now` reaches it.
    fn latest(&self) -> u64;
    /// The entry's hash (the same as [`hash_key`] of its key).
    fn hash_with(&self, hasher: &DefaultHashBuilder) -> u64;
}

impl Stored for Entry {
    fn latest(&self) -> u64 {
        self.tats.latest()
    }

    fn hash_with(&self, hasher: &DefaultHashBuilder) -> u64 {
        hash_stored(hasher, &self.key, self.policy)
    }
}

impl<const N: usize> Stored for V4Entry<N> {
    fn latest(&self) -> u64 {
        self.tats.iter().copied().max().unwrap_or(0)
    }

    fn hash_with(&self, hasher: &DefaultHashBuilder) -> u64 {
        hash_v4(hasher, self.ip, self.policy)
    }
}

/// One shard: compact tables for IPv4 keys under policies of 1 to 4 windows, and
/// a general table for every other key. A key lives in exactly one of them (chosen
/// by its kind and its policy's window count), all under the shard's one lock.
#[derive(Debug, Default)]
struct Shard {
    v4_1: HashTable<V4Entry<1>>,
    v4_2: HashTable<V4Entry<2>>,
    v4_3: HashTable<V4Entry<3>>,
    v4_4: HashTable<V4Entry<4>>,
    table: HashTable<Entry>,
    /// While `now` is before this, the (full) shard has nothing to evict.
    full_until: u64,
}

impl Shard {
    fn len(&self) -> usize {
        self.v4_1.len() + self.v4_2.len() + self.v4_3.len() + self.v4_4.len() + self.table.len()
    }

    fn bytes(&self) -> usize {
        fn bytes<E>(table: &HashTable<E>) -> usize {
            table.capacity() * (std::mem::size_of::<E>() + 1)
        }
        bytes(&self.v4_1)
            + bytes(&self.v4_2)
            + bytes(&self.v4_3)
            + bytes(&self.v4_4)
            + bytes(&self.table)
    }
}

/// Cache-line aligned so shards do not share lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// A new key could not be stored: its shard is full of keys still recovering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreFull {
    /// Until the earliest entry of the shard recovers.
    pub(crate) retry_after: Duration,
}

/// Where a store reads the time, in nanoseconds since the store was created.
#[derive(Debug)]
enum TimeSource {
    /// quanta's raw counter and its calibration (see [`Clock::Fast`]).
    Fast { clock: quanta::Clock, epoch: u64 },
    /// `tokio::time::Instant` (see [`Clock::Tokio`]).
    Tokio { epoch: Instant },
}

impl TimeSource {
    fn new(clock: Clock) -> Self {
        match clock {
            Clock::Fast => {
                let clock = quanta::Clock::new();
                let epoch = clock.raw();
                TimeSource::Fast { clock, epoch }
            }
            Clock::Tokio => TimeSource::Tokio {
                epoch: Instant::now(),
            },
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        match self {
            TimeSource::Fast { clock, epoch } => clock.delta_as_nanos(*epoch, clock.raw()),
            TimeSource::Tokio { epoch } => nanos_since(*epoch, Instant::now()),
        }
    }
}

/// Nanoseconds from `epoch` to `now`, in u64 arithmetic rather than `as_nanos()`'s
/// u128 (saturates after 584 years).
#[inline]
fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    let since = now.saturating_duration_since(epoch);
    since
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(since.subsec_nanos()))
}

/// The sharded GCRA store.
#[derive(Debug)]
pub(crate) struct LocalStore {
    shards: Box<[Padded]>,
    hasher: DefaultHashBuilder,
    time: TimeSource,
    per_shard: usize,
    next_sweep: AtomicU64,
    cursor: AtomicUsize,
}

impl LocalStore {
    /// A store holding at most `max_keys` keys (rounded up to a multiple of the shard
    /// count), reading the time from `clock`.
    pub(crate) fn new(max_keys: usize, clock: Clock) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            time: TimeSource::new(clock),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            next_sweep: AtomicU64::new(0),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Now, in nanoseconds since the store was created (the ticks of `check_with`).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.time.now()
    }

    /// `now` as ticks of a store on [`Clock::Tokio`] (tests drive that clock).
    #[cfg(test)]
    fn ticks(&self, now: Instant) -> u64 {
        match &self.time {
            TimeSource::Tokio { epoch } => nanos_since(*epoch, now),
            TimeSource::Fast { .. } => panic!("a Fast store takes no tokio instants"),
        }
    }

    /// Decides a request of `cost` for `key` under policy number `policy`.
    #[cfg(test)]
    pub(crate) fn check(
        &self,
        key: &Key,
        policy: u32,
        windows: &[Window],
        cost: u64,
        count_rejected: bool,
        now: Instant,
    ) -> Result<Verdict, StoreFull> {
        let now = self.ticks(now);
        self.check_with(key, policy, windows, cost, count_rejected, true, now)
    }

    /// [`check`](Self::check); an admitted verdict carries the window closest to
    /// exhaustion only when `summary` (see [`gcra::check_with`]).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn check_with(
        &self,
        key: &Key,
        policy: u32,
        windows: &[Window],
        cost: u64,
        count_rejected: bool,
        summary: bool,
        now: u64,
    ) -> Result<Verdict, StoreFull> {
        if windows.is_empty() {
            return Ok(Verdict::UNLIMITED);
        }
        let hash = hash_key(&self.hasher, key, policy);
        let shard = &self.shards[shard_index(hash)];
        let result = {
            let mut shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            self.decide(
                &mut shard,
                hash,
                key,
                policy,
                windows,
                cost,
                count_rejected,
                summary,
                now,
            )
        };
        self.maybe_sweep(now);
        result
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn decide(
        &self,
        shard: &mut Shard,
        hash: u64,
        key: &Key,
        policy: u32,
        windows: &[Window],
        cost: u64,
        count_rejected: bool,
        summary: bool,
        now: u64,
    ) -> Result<Verdict, StoreFull> {
        let n = windows.len();
        if let Key::Ip(IpAddr::V4(v4)) = key {
            let ip = v4.to_bits();
            let args = (
                hash,
                ip,
                policy,
                windows,
                cost,
                count_rejected,
                summary,
                now,
            );
            match n {
                1 => return self.decide_v4(shard, |s| &mut s.v4_1, args),
                2 => return self.decide_v4(shard, |s| &mut s.v4_2, args),
                3 => return self.decide_v4(shard, |s| &mut s.v4_3, args),
                4 => return self.decide_v4(shard, |s| &mut s.v4_4, args),
                _ => {}
            }
        }
        if let Some(entry) = shard
            .table
            .find_mut(hash, |e| e.policy == policy && e.key.matches(key))
        {
            return Ok(gcra::check_with(
                windows,
                entry.tats.slice_mut(n),
                now,
                cost,
                count_rejected,
                summary,
            ));
        }
        let mut tats = Tats::fresh(n);
        let verdict = gcra::check_with(
            windows,
            tats.slice_mut(n),
            now,
            cost,
            count_rejected,
            summary,
        );
        if tats.latest() <= now {
            // Nothing charged (cost 0): a fresh key needs no entry.
            return Ok(verdict);
        }
        self.make_room(shard, now)?;
        let hasher = &self.hasher;
        shard.table.insert_unique(
            hash,
            Entry {
                key: StoredKey::new(key),
                policy,
                tats,
            },
            |e| e.hash_with(hasher),
        );
        Ok(verdict)
    }

    /// [`decide`](Self::decide) for an IPv4 key under a policy of `N` windows, in the
    /// compact table `pick` selects.
    #[allow(clippy::type_complexity)]
    #[inline]
    fn decide_v4<const N: usize>(
        &self,
        shard: &mut Shard,
        pick: fn(&mut Shard) -> &mut HashTable<V4Entry<N>>,
        (hash, ip, policy, windows, cost, count_rejected, summary, now): (
            u64,
            u32,
            u32,
            &[Window],
            u64,
            bool,
            bool,
            u64,
        ),
    ) -> Result<Verdict, StoreFull> {
        if let Some(entry) = pick(shard).find_mut(hash, |e| e.ip == ip && e.policy == policy) {
            return Ok(gcra::check_with(
                windows,
                &mut entry.tats,
                now,
                cost,
                count_rejected,
                summary,
            ));
        }
        let mut tats = [0; N];
        let verdict = gcra::check_with(windows, &mut tats, now, cost, count_rejected, summary);
        if tats.iter().all(|&tat| tat <= now) {
            // Nothing charged (cost 0): a fresh key needs no entry.
            return Ok(verdict);
        }
        self.make_room(shard, now)?;
        let hasher = &self.hasher;
        pick(shard).insert_unique(hash, V4Entry { ip, policy, tats }, |e| e.hash_with(hasher));
        Ok(verdict)
    }

    /// Makes room for one new key, sweeping a full shard (at most once until its
    /// earliest entry recovers); refuses when every entry is still recovering.
    fn make_room(&self, shard: &mut Shard, now: u64) -> Result<(), StoreFull> {
        if shard.len() >= self.per_shard {
            if now >= shard.full_until {
                self.sweep(shard, now);
            }
            if shard.len() >= self.per_shard {
                return Err(StoreFull {
                    retry_after: Duration::from_nanos(shard.full_until.saturating_sub(now)),
                });
            }
        }
        Ok(())
    }

    /// Drops recovered entries and gives memory back; records when the earliest
    /// remaining entry recovers.
    fn sweep(&self, shard: &mut Shard, now: u64) {
        fn sweep_table<E: Stored>(
            table: &mut HashTable<E>,
            now: u64,
            earliest: &mut u64,
            hasher: &DefaultHashBuilder,
        ) {
            table.retain(|e| {
                let latest = e.latest();
                if latest > now {
                    *earliest = (*earliest).min(latest);
                    true
                } else {
                    false
                }
            });
            let len = table.len();
            if table.capacity() > (4 * len).max(KEEP_SLOTS) {
                table.shrink_to(2 * len, |e| e.hash_with(hasher));
            } else if len == 0 {
                // Keeps the allocation but drops the tombstones `retain` may have
                // left, which would make the next inserts rehash the table.
                table.clear();
            }
        }
        let mut earliest = u64::MAX;
        let hasher = &self.hasher;
        sweep_table(&mut shard.v4_1, now, &mut earliest, hasher);
        sweep_table(&mut shard.v4_2, now, &mut earliest, hasher);
        sweep_table(&mut shard.v4_3, now, &mut earliest, hasher);
        sweep_table(&mut shard.v4_4, now, &mut earliest, hasher);
        sweep_table(&mut shard.table, now, &mut earliest, hasher);
        shard.full_until = if shard.len() >= self.per_shard {
            earliest
        } else {
            0
        };
    }

    #[inline]
    fn maybe_sweep(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now.saturating_add(SWEEP_EVERY.as_nanos() as u64);
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let index = self.cursor.fetch_add(1, Ordering::Relaxed) & (SHARDS - 1);
        let mut shard = self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.sweep(&mut shard, now);
    }

    /// Sweeps every shard at `now` (ticks; diagnostics and tests).
    pub(crate) fn sweep_all(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            self.sweep(&mut shard, now);
        }
    }

    /// Keys held now (locks each shard in turn; for diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Bytes held by the tables (entries and control bytes at current capacity),
    /// not counting heap data owned by keys.
    pub(crate) fn table_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).bytes())
            .sum()
    }
}

/// The shard of a key hash: high bits folded onto low ones, then the top bits after a
/// multiply by an odd constant, so every bit of the hash counts. foldhash's output for a single `u64` write
/// is not uniform in every bit range for every random seed (with some process seeds,
/// bits 32..38 of sequential IPv4 keys took only ~40 of 64 values, which left shards
/// empty and refused new keys early), so no fixed slice of the raw hash is used.
#[inline]
fn shard_index(hash: u64) -> usize {
    const _: () = assert!(SHARDS.is_power_of_two() && SHARDS > 1);
    let folded = hash ^ (hash >> 29) ^ (hash >> 47);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// Hashes a key with one write for the common key kinds (equal keys hash equally;
/// different kinds may collide, which only costs a comparison).
#[inline]
fn hash_key(hasher: &DefaultHashBuilder, key: &Key, policy: u32) -> u64 {
    let mut h = hasher.build_hasher();
    match key {
        Key::Ip(IpAddr::V4(v4)) => return hash_v4(hasher, v4.to_bits(), policy),
        Key::Ip(IpAddr::V6(v6)) => {
            h.write_u128(v6.to_bits());
            h.write_u32(policy);
        }
        Key::Text(text) => {
            h.write(text.as_bytes());
            h.write_u32(policy);
        }
        Key::Header(value) => {
            h.write(value.as_bytes());
            h.write_u32(policy);
        }
        other => {
            other.hash(&mut h);
            h.write_u32(policy);
        }
    }
    h.finish()
}

/// [`hash_key`] of an IPv4 key: one write.
#[inline]
fn hash_v4(hasher: &DefaultHashBuilder, ip: u32, policy: u32) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u64(u64::from(ip) | u64::from(policy) << 32);
    h.finish()
}

/// [`hash_key`] of a stored key, without rebuilding the key.
fn hash_stored(hasher: &DefaultHashBuilder, key: &StoredKey, policy: u32) -> u64 {
    match key {
        StoredKey::V4(a) => hash_v4(hasher, u32::from_be_bytes(*a), policy),
        StoredKey::V6(a) => hash_key(hasher, &Key::Ip(IpAddr::from(*a)), policy),
        StoredKey::Other(k) => hash_key(hasher, k, policy),
    }
}

/// The size of one entry in the table (key, policy number, window state).
pub(crate) const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

#[cfg(test)]
mod shard_tests {
    use super::*;

    #[test]
    fn sequential_ipv4_keys_reach_every_shard_for_any_seed() {
        // Many independently seeded hashers (each a new random state); the process's
        // global seed is fixed here, so CI runs add more seeds over time.
        for _ in 0..200 {
            let hasher = DefaultHashBuilder::default();
            let mut used = [false; SHARDS];
            for i in 0..2000u32 {
                used[shard_index(hash_v4(&hasher, 0x0a00_0000 + i, 0))] = true;
            }
            assert!(used.iter().all(|u| *u));
        }
    }

    #[test]
    fn shard_index_uses_high_and_low_bits() {
        // Hashes that differ only in low bits, or only in bits 32..38, spread out.
        let low: std::collections::HashSet<usize> = (0..64u64).map(shard_index).collect();
        let mid: std::collections::HashSet<usize> =
            (0..64u64).map(|i| shard_index(i << 32)).collect();
        assert!(low.len() > SHARDS / 2, "{}", low.len());
        assert!(mid.len() > SHARDS / 2, "{}", mid.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(i: u32) -> Key {
        Key::Ip(IpAddr::V4(Ipv4Addr::from(i)))
    }

    fn windows() -> Vec<Window> {
        vec![Window::new(2, 1_000_000_000, 2).unwrap()]
    }

    #[tokio::test(start_paused = true)]
    async fn keys_and_policies_are_separate() {
        let store = LocalStore::new(1000, Clock::Tokio);
        let w = windows();
        let now = Instant::now();
        for _ in 0..2 {
            assert!(store.check(&ip(1), 0, &w, 1, false, now).unwrap().allowed);
        }
        assert!(!store.check(&ip(1), 0, &w, 1, false, now).unwrap().allowed);
        assert!(store.check(&ip(2), 0, &w, 1, false, now).unwrap().allowed);
        assert!(store.check(&ip(1), 1, &w, 1, false, now).unwrap().allowed);
        assert_eq!(store.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_never_resets_a_throttled_key() {
        // 64 shards x 1 key each.
        let store = LocalStore::new(SHARDS, Clock::Tokio);
        let w = windows();
        let now = Instant::now();
        let mut refused = 0;
        for i in 0..10_000 {
            match store.check(&ip(i), 0, &w, 1, false, now) {
                Ok(v) => assert!(v.allowed),
                Err(full) => {
                    refused += 1;
                    assert_eq!(full.retry_after, Duration::from_millis(500));
                }
            }
        }
        assert_eq!(store.len(), SHARDS);
        assert_eq!(refused, 10_000 - SHARDS);
        // Every stored key is still throttled exactly as before.
        for i in 0..10_000 {
            if let Ok(v) = store.check(&ip(i), 0, &w, 1, false, now) {
                assert!(v.allowed);
                assert_eq!(v.tightest.unwrap().remaining, 0);
            }
        }
        // Once recovered, room is made again.
        let later = now + Duration::from_secs(1);
        let admitted = (20_000..30_000)
            .filter(|&i| store.check(&ip(i), 0, &w, 1, false, later).is_ok())
            .count();
        assert_eq!(admitted, SHARDS);
    }

    #[tokio::test(start_paused = true)]
    async fn many_keys_shrink_back_once_idle() {
        // The issue asks for 1M keys; the default is smaller to keep the suite fast.
        // RATELIMIT_KEYS=1000000 runs the full count (about 3 s in a debug build).
        let count: u32 = std::env::var("RATELIMIT_KEYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let store = LocalStore::new(count as usize * 2, Clock::Tokio);
        let w = windows();
        let baseline = store.table_bytes();
        let start = Instant::now();
        for i in 0..count {
            let now = start + Duration::from_micros(u64::from(i % 1000));
            assert!(store.check(&ip(i), 0, &w, 1, false, now).unwrap().allowed);
        }
        assert_eq!(store.len(), count as usize);
        let peak = store.table_bytes();
        assert!(peak > baseline);
        // Still recovering: a sweep keeps everything.
        store.sweep_all(store.ticks(start + Duration::from_millis(10)));
        assert_eq!(store.len(), count as usize);
        // Idle past the longest window: ordinary decisions sweep one shard each
        // SWEEP_EVERY, so one full round brings the store back down.
        let mut now = start + Duration::from_secs(2);
        for _ in 0..SHARDS {
            now += SWEEP_EVERY;
            store.check(&ip(u32::MAX), 0, &w, 0, false, now).unwrap();
        }
        assert_eq!(store.len(), 0);
        assert!(
            store.table_bytes() < peak / 10,
            "{} vs {peak}",
            store.table_bytes()
        );
    }

    /// The default clock counts nanoseconds from the store's creation, in step with
    /// the OS monotonic clock.
    #[test]
    fn fast_clock_counts_nanoseconds() {
        let store = LocalStore::new(10, Clock::Fast);
        let nanos = |d: Duration| d.as_nanos() as u64;
        let r0 = std::time::Instant::now();
        let s0 = store.now();
        let r1 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let r2 = std::time::Instant::now();
        let s1 = store.now();
        let r3 = std::time::Instant::now();
        // The store's interval lies between the OS clock's inner and outer intervals
        // (whatever preemption happened between the reads), give or take 1% and
        // 100 µs for the calibration.
        let (inner, outer) = (nanos(r2 - r1), nanos(r3 - r0));
        let elapsed = s1 - s0;
        assert!(
            elapsed + inner / 100 + 100_000 >= inner && elapsed <= outer + outer / 100 + 100_000,
            "{elapsed} ns, OS clock between {inner} and {outer}"
        );
    }

    #[test]
    fn entry_is_compact() {
        const { assert!(ENTRY_BYTES == 64) };
        const { assert!(std::mem::size_of::<V4Entry<1>>() == 16) };
        const { assert!(std::mem::size_of::<V4Entry<2>>() == 24) };
        const { assert!(std::mem::size_of::<V4Entry<3>>() == 32) };
        const { assert!(std::mem::size_of::<V4Entry<4>>() == 40) };
    }

    /// IPv4 keys under 1–4 windows use the compact tables, everything else the
    /// general one; the same key under policies of different sizes stays separate,
    /// and every table is bounded, swept and charged the same way.
    #[tokio::test(start_paused = true)]
    async fn compact_and_general_tables_behave_alike() {
        let store = LocalStore::new(10_000, Clock::Tokio);
        let policies: Vec<Vec<Window>> = (1..=4)
            .map(|n| {
                (0..n)
                    .map(|i| Window::new(2 + i, 1_000_000_000 * (1 + i), 2 + i).unwrap())
                    .collect()
            })
            .collect();
        let keys = [
            ip(7),
            Key::Ip("2001:db8::7".parse().unwrap()),
            Key::Text("alice".into()),
        ];
        let now = Instant::now();
        for (p, w) in policies.iter().enumerate() {
            for key in &keys {
                // Quota 2 in the first window: two admitted, the third refused.
                for _ in 0..2 {
                    let v = store.check(key, p as u32, w, 1, false, now).unwrap();
                    assert!(v.allowed, "{key:?} policy {p}");
                }
                let v = store.check(key, p as u32, w, 1, false, now).unwrap();
                assert!(!v.allowed, "{key:?} policy {p}");
                assert_eq!(v.tightest.unwrap().index, 0);
                assert_eq!(v.retry_after, Some(500_000_000));
            }
        }
        assert_eq!(store.len(), 12);
        assert!(store.table_bytes() > 0);
        // Not yet recovered: the sweep keeps everything.
        store.sweep_all(store.ticks(now + Duration::from_millis(600)));
        assert_eq!(store.len(), 12);
        // Past the longest window (4 s): all gone.
        store.sweep_all(store.ticks(now + Duration::from_secs(5)));
        assert_eq!(store.len(), 0);
        // A cost-0 request stores nothing.
        store.check(&ip(8), 0, &policies[0], 0, false, now).unwrap();
        assert_eq!(store.len(), 0);
    }
}
