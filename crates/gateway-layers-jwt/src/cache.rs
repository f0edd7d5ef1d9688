//! The verified-token cache: bounded by entries and bytes, keyed by a keyed hash of
//! the whole token, entries valid until the token's `exp` and while the provider's
//! keys keep the generation they were verified with.
//!
//! The key is foldhash (a fast multiply-fold hash, about ten times cheaper than
//! SipHash on a 600-byte RS256 token) seeded per layer from std's OS-random
//! `RandomState` and foldhash's own random global seed, so nobody outside the process
//! can predict which tokens share a bucket. The hash only picks the entry: every entry
//! stores the whole token it was verified for, and a lookup is a hit only when the
//! presented token equals it byte for byte (compared in constant time). Two different
//! tokens therefore never share a cached result, whatever their hashes: a collision
//! is just a miss, so the hash needs no cryptographic strength. Only verified tokens
//! are inserted and every shard is bounded, so crafted collisions cannot grow a
//! bucket either.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    sync::{Arc, Mutex, OnceLock},
};

const SHARDS: usize = 16;

/// Bytes charged per entry on top of the token and claims (map slot, `Arc`s, indices).
const ENTRY_OVERHEAD: usize = 128;

/// Cache bounds.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct CacheConfig {
    /// Most entries (default 10,000; 0 disables the cache).
    pub max_entries: usize,
    /// Most bytes of cached tokens and claims (default 16 MiB).
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

impl CacheConfig {
    /// No cache.
    pub fn disabled() -> Self {
        Self {
            max_entries: 0,
            max_bytes: 0,
        }
    }
}

/// The keyed hash of a whole token (not secret-derived, not a credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey(u64);

/// Passes a [`TokenKey`] through: it already is a uniformly distributed keyed hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `TokenKey`; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Equality of two byte strings in time independent of where they differ (it still
/// depends on the lengths, which are not secret: a token's length is visible on the
/// wire).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (a_words, a_rest) = a.split_at(a.len() - a.len() % 8);
    let (b_words, b_rest) = b.split_at(a_words.len());
    for (x, y) in a_words.chunks_exact(8).zip(b_words.chunks_exact(8)) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        diff |= x ^ y;
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        diff |= u64::from(x ^ y);
    }
    // Keep the optimizer from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// One OS-random 64-bit value (std's `RandomState` keys come from the OS; a new
/// state differs from the last one).
fn os_random() -> u64 {
    RandomState::new().hash_one(0x6a77_745f_6361_6368_u64)
}

/// foldhash seeded from OS randomness: the shared seed once per process, the
/// per-hasher seed once per cache (so each layer hashes differently).
fn random_state() -> foldhash::fast::SeedableRandomState {
    static SHARED: OnceLock<foldhash::SharedSeed> = OnceLock::new();
    let shared = SHARED.get_or_init(|| foldhash::SharedSeed::from_u64(os_random()));
    foldhash::fast::SeedableRandomState::with_seed(os_random(), shared)
}

/// The shard of a key: high bits folded onto low ones, then the top bits after a
/// multiply by an odd constant, so every bit of the hash counts (a fixed slice of foldhash's output is not uniform for every
/// seed).
fn shard_index(key: TokenKey) -> usize {
    let folded = key.0 ^ (key.0 >> 29) ^ (key.0 >> 47);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS
}

struct Entry<V> {
    token: Box<[u8]>,
    value: Arc<V>,
    expires_at: u64,
    provider: usize,
    generation: u64,
    bytes: usize,
}

struct Shard<V> {
    map: HashMap<TokenKey, Entry<V>, BuildHasherDefault<KeyHasher>>,
    bytes: usize,
    /// No entry expires before this (a lower bound), so a full shard is only scanned
    /// for expired entries when one may exist: inserting into a full shard of live
    /// tokens stays O(1).
    earliest_expiry: u64,
}

impl<V> Shard<V> {
    fn remove(&mut self, key: &TokenKey) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.bytes;
        }
    }
}

pub(crate) struct TokenCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: foldhash::fast::SeedableRandomState,
    max_entries: usize,
    max_bytes: usize,
}

impl<V> TokenCache<V> {
    pub(crate) fn new(config: CacheConfig) -> Option<Self> {
        if config.max_entries == 0 || config.max_bytes == 0 {
            return None;
        }
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::default(),
                    bytes: 0,
                    earliest_expiry: u64::MAX,
                })
            })
            .collect();
        Some(Self {
            shards,
            hasher: random_state(),
            max_entries: config.max_entries.div_ceil(SHARDS),
            max_bytes: config.max_bytes.div_ceil(SHARDS),
        })
    }

    /// The keyed hash of the whole token.
    pub(crate) fn key(&self, token: &str) -> TokenKey {
        TokenKey(self.hasher.hash_one(token.as_bytes()))
    }

    fn shard(&self, key: TokenKey) -> &Mutex<Shard<V>> {
        &self.shards[shard_index(key)]
    }

    /// The cached value for exactly `token` (whose key is `key`), if still valid at
    /// `now` for the provider's `generation`.
    pub(crate) fn get(
        &self,
        key: TokenKey,
        token: &str,
        now: u64,
        generation: impl Fn(usize) -> u64,
    ) -> Option<Arc<V>> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.map.get(&key)?;
        if !same_bytes(&entry.token, token.as_bytes()) {
            // Another token with the same hash: a miss, and the entry stays.
            return None;
        }
        if now < entry.expires_at && generation(entry.provider) == entry.generation {
            return Some(entry.value.clone());
        }
        shard.remove(&key);
        None
    }

    /// Remembers `value` for `token`. `extra_bytes` is the size of the value beyond
    /// the token itself (the decoded claims).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        key: TokenKey,
        token: &str,
        value: Arc<V>,
        expires_at: u64,
        provider: usize,
        generation: u64,
        extra_bytes: usize,
        now: u64,
    ) {
        if expires_at <= now {
            return;
        }
        let bytes = token
            .len()
            .saturating_add(extra_bytes)
            .saturating_add(ENTRY_OVERHEAD);
        if bytes > self.max_bytes {
            return;
        }
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.remove(&key);
        if (shard.map.len() >= self.max_entries || shard.bytes + bytes > self.max_bytes)
            && shard.earliest_expiry <= now
        {
            let mut freed = 0;
            let mut earliest = u64::MAX;
            shard.map.retain(|_, e| {
                let keep = e.expires_at > now;
                if keep {
                    earliest = earliest.min(e.expires_at);
                } else {
                    freed += e.bytes;
                }
                keep
            });
            shard.bytes -= freed;
            shard.earliest_expiry = earliest;
        }
        while shard.map.len() >= self.max_entries || shard.bytes + bytes > self.max_bytes {
            let Some(victim) = shard.map.keys().next().copied() else {
                break;
            };
            shard.remove(&victim);
        }
        shard.bytes += bytes;
        shard.earliest_expiry = shard.earliest_expiry.min(expires_at);
        shard.map.insert(
            key,
            Entry {
                token: token.as_bytes().into(),
                value,
                expires_at,
                provider,
                generation,
                bytes,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().map.len())
            .sum()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(cache: &TokenCache<u32>, token: &str, value: u32, exp: u64, extra: usize) {
        cache.insert(
            cache.key(token),
            token,
            Arc::new(value),
            exp,
            0,
            1,
            extra,
            50,
        );
    }

    fn get(cache: &TokenCache<u32>, token: &str, now: u64, generation: u64) -> Option<u32> {
        cache
            .get(cache.key(token), token, now, |_| generation)
            .map(|v| *v)
    }

    #[test]
    fn expiry_generation_and_bounds() {
        let cache = TokenCache::new(CacheConfig {
            max_entries: 32,
            max_bytes: 1 << 20,
        })
        .unwrap();
        put(&cache, "token-a", 1, 100, 10);
        assert_eq!(get(&cache, "token-a", 99, 1), Some(1));
        assert_eq!(get(&cache, "token-a", 99, 2), None, "rotation drops it");
        assert_eq!(cache.len(), 0, "and removes it");
        put(&cache, "token-a", 1, 100, 10);
        assert_eq!(get(&cache, "token-a", 100, 1), None, "expired at exp");
        assert_eq!(cache.len(), 0);
        put(&cache, "token-a", 1, 50, 10);
        assert_eq!(cache.len(), 0, "already expired: not stored");
        for i in 0..1000 {
            put(&cache, &format!("t{i}"), i, 1000, 10);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        let small = TokenCache::new(CacheConfig {
            max_entries: 1000,
            max_bytes: 16 * 1024,
        })
        .unwrap();
        for i in 0..1000 {
            put(&small, &format!("t{i}"), i, 1000, 500);
        }
        assert!(
            small.bytes() <= 16 * 1024 + SHARDS * 1024,
            "{}",
            small.bytes()
        );
        let big = "x".repeat(2000);
        put(&small, &big, 1, 1000, 0);
        assert_eq!(
            get(&small, &big, 60, 1),
            None,
            "larger than a shard's bytes"
        );
        assert!(TokenCache::<u8>::new(CacheConfig::disabled()).is_none());
    }

    #[test]
    fn a_full_shard_drops_expired_entries_before_live_ones() {
        // Two entries per shard; find three tokens that share a shard.
        let cache = TokenCache::new(CacheConfig {
            max_entries: 2 * SHARDS,
            max_bytes: 1 << 20,
        })
        .unwrap();
        let shard_of = |t: &str| shard_index(cache.key(t));
        let first = "token-0".to_owned();
        let same: Vec<String> = (1..10_000)
            .map(|i| format!("token-{i}"))
            .filter(|t| shard_of(t) == shard_of(&first))
            .take(3)
            .collect();
        let (expiring, live, late, later) = (&first, &same[0], &same[1], &same[2]);
        let put_at = |t: &str, exp: u64, now: u64| {
            cache.insert(cache.key(t), t, Arc::new(1), exp, 0, 1, 0, now);
        };
        put_at(expiring, 100, 50);
        put_at(live, 10_000, 50);
        // Full, and one entry has expired: it goes, the live one stays.
        put_at(late, 10_000, 200);
        assert_eq!(get_at(&cache, live, 200), Some(1));
        assert_eq!(get_at(&cache, late, 200), Some(1));
        assert_eq!(get_at(&cache, expiring, 200), None);
        // Full of live entries: one is evicted, the bound holds.
        put_at(later, 10_000, 300);
        assert_eq!(get_at(&cache, later, 300), Some(1));
        let kept = [live, late]
            .iter()
            .filter(|t| get_at(&cache, t, 300).is_some())
            .count();
        assert_eq!(kept, 1);
    }

    fn get_at(cache: &TokenCache<u32>, token: &str, now: u64) -> Option<u32> {
        cache.get(cache.key(token), token, now, |_| 1).map(|v| *v)
    }

    #[test]
    fn token_bytes_are_counted() {
        let cache = TokenCache::new(CacheConfig::default()).unwrap();
        let token = "y".repeat(700);
        put(&cache, &token, 1, 1000, 10);
        assert_eq!(cache.bytes(), 700 + 10 + ENTRY_OVERHEAD);
        // Replacing an entry does not count it twice.
        put(&cache, &token, 2, 1000, 10);
        assert_eq!(cache.bytes(), 700 + 10 + ENTRY_OVERHEAD);
        assert_eq!(get(&cache, &token, 60, 1), Some(2));
    }

    #[test]
    fn only_the_identical_token_hits() {
        let cache = TokenCache::new(CacheConfig::default()).unwrap();
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLWJ5dGVz";
        put(&cache, token, 7, 1000, 10);
        assert_eq!(get(&cache, token, 60, 1), Some(7));
        // Every one-byte change, at every position, misses.
        for i in 0..token.len() {
            let mut other = token.as_bytes().to_vec();
            other[i] = if other[i] == b'A' { b'B' } else { b'A' };
            let other = String::from_utf8(other).unwrap();
            assert_eq!(get(&cache, &other, 60, 1), None, "byte {i}");
        }
        // Prefixes and extensions miss too.
        assert_eq!(get(&cache, &token[..token.len() - 1], 60, 1), None);
        assert_eq!(get(&cache, &format!("{token}A"), 60, 1), None);
        assert_eq!(get(&cache, token, 60, 1), Some(7), "misses evict nothing");
    }

    #[test]
    fn a_colliding_key_never_returns_another_tokens_value() {
        // Force a collision: look up a different token under the stored token's key,
        // as if the two hashed alike.
        let cache = TokenCache::new(CacheConfig::default()).unwrap();
        let token = "aaaa.bbbb.cccc";
        let key = cache.key(token);
        cache.insert(key, token, Arc::new(1u32), 1000, 0, 1, 0, 50);
        assert!(cache.get(key, "aaaa.bbbb.cccd", 60, |_| 1).is_none());
        assert!(cache.get(key, "aaaa.bbbb.ccc", 60, |_| 1).is_none());
        assert_eq!(cache.get(key, token, 60, |_| 1).as_deref(), Some(&1));
    }

    #[test]
    fn keys_differ_between_caches() {
        // Random keys per cache: the same token hashes differently in two layers
        // (the chance of equal 64-bit values by accident is negligible).
        let a = TokenCache::<u8>::new(CacheConfig::default()).unwrap();
        let b = TokenCache::<u8>::new(CacheConfig::default()).unwrap();
        assert_ne!(a.key("same token"), b.key("same token"));
        assert_eq!(a.key("same token"), a.key("same token"));
    }

    #[test]
    fn same_bytes_compares_everything() {
        assert!(same_bytes(b"", b""));
        assert!(same_bytes(b"0123456789abcdefXYZ", b"0123456789abcdefXYZ"));
        assert!(!same_bytes(b"0123456789abcdefXYZ", b"0123456789abcdefXYz"));
        assert!(!same_bytes(b"0123456789abcdefXYZ", b"1123456789abcdefXYZ"));
        assert!(!same_bytes(b"0123456789abcdefXYZ", b"0123456789abcdeFXYZ"));
        assert!(!same_bytes(b"abc", b"abcd"));
    }
}
