//! The verified-token cache: bounded by entries and bytes, keyed by the SHA-256 of the
//! whole token, entries valid until the token's `exp` and while the provider's keys
//! keep the generation they were verified with.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

const SHARDS: usize = 16;

/// Cache bounds.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct CacheConfig {
    /// Most entries (default 10,000; 0 disables the cache).
    pub max_entries: usize,
    /// Most bytes of cached token payloads (default 16 MiB).
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

pub(crate) type TokenHash = [u8; 32];

pub(crate) fn hash(token: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

struct Entry<V> {
    value: Arc<V>,
    expires_at: u64,
    provider: usize,
    generation: u64,
    bytes: usize,
}

struct Shard<V> {
    map: HashMap<TokenHash, Entry<V>>,
    bytes: usize,
}

pub(crate) struct TokenCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
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
                    map: HashMap::new(),
                    bytes: 0,
                })
            })
            .collect();
        Some(Self {
            shards,
            max_entries: config.max_entries.div_ceil(SHARDS),
            max_bytes: config.max_bytes.div_ceil(SHARDS),
        })
    }

    fn shard(&self, key: &TokenHash) -> &Mutex<Shard<V>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The cached value if still valid at `now` for the provider's `generation`.
    pub(crate) fn get(
        &self,
        key: &TokenHash,
        now: u64,
        generation: impl Fn(usize) -> u64,
    ) -> Option<Arc<V>> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.map.get(key)?;
        if now < entry.expires_at && generation(entry.provider) == entry.generation {
            return Some(entry.value.clone());
        }
        if let Some(old) = shard.map.remove(key) {
            shard.bytes -= old.bytes;
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        key: TokenHash,
        value: Arc<V>,
        expires_at: u64,
        provider: usize,
        generation: u64,
        bytes: usize,
        now: u64,
    ) {
        let bytes = bytes + 128;
        if bytes > self.max_bytes {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = shard.map.remove(&key) {
            shard.bytes -= old.bytes;
        }
        if shard.map.len() >= self.max_entries || shard.bytes + bytes > self.max_bytes {
            let mut freed = 0;
            shard.map.retain(|_, e| {
                let keep = e.expires_at > now;
                if !keep {
                    freed += e.bytes;
                }
                keep
            });
            shard.bytes -= freed;
        }
        while shard.map.len() >= self.max_entries || shard.bytes + bytes > self.max_bytes {
            let Some(victim) = shard.map.keys().next().copied() else {
                break;
            };
            if let Some(old) = shard.map.remove(&victim) {
                shard.bytes -= old.bytes;
            }
        }
        shard.bytes += bytes;
        shard.map.insert(
            key,
            Entry {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_generation_and_bounds() {
        let cache = TokenCache::new(CacheConfig {
            max_entries: 32,
            max_bytes: 1 << 20,
        })
        .unwrap();
        let k = hash("token-a");
        cache.insert(k, Arc::new(1u32), 100, 0, 1, 10, 50);
        assert_eq!(cache.get(&k, 99, |_| 1).as_deref(), Some(&1));
        assert!(cache.get(&k, 99, |_| 2).is_none(), "rotation drops it");
        cache.insert(k, Arc::new(1u32), 100, 0, 1, 10, 50);
        assert!(cache.get(&k, 100, |_| 1).is_none(), "expired at exp");
        for i in 0..1000 {
            cache.insert(hash(&format!("t{i}")), Arc::new(i), 1000, 0, 1, 10, 50);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        let small = TokenCache::new(CacheConfig {
            max_entries: 1000,
            max_bytes: 16 * 1024,
        })
        .unwrap();
        for i in 0..1000 {
            small.insert(hash(&format!("t{i}")), Arc::new(i), 1000, 0, 1, 500, 50);
        }
        let total: usize = small.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert!(total <= 16 * 1024 + SHARDS * 1024, "{total}");
        assert!(TokenCache::<u8>::new(CacheConfig::disabled()).is_none());
    }
}
