//! The Redis backend: one atomic Lua script per decision, server time, reconnects.

use std::{
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use gateway_layers_core::{ConfigError, Key, metrics};
use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
};
use tokio::time::Instant;

use crate::{
    DecisionSource,
    decision::Outcome,
    gcra,
    layer::{DecisionFuture, Shared},
};

/// GCRA over every window of one key, atomically, with Redis' clock.
///
/// `KEYS[1]`: the bucket (a hash, one field per window holding its TAT in µs).
/// `ARGV[1]`: cost; `ARGV[2]`: `1` to charge refused requests; then per window:
/// emission interval, tolerance and window length, in µs.
/// Returns `{allowed, 0, ahead_1, …, ahead_n}` where `ahead_i = TAT_i − now` after
/// the decision.
pub const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local count_rejected = ARGV[2] == '1'
local n = (#ARGV - 2) / 3
local fields = {}
for i = 1, n do fields[i] = tostring(i) end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))
local tats = {}
local allowed = 1
for i = 1, n do
  local e = tonumber(ARGV[3 * i])
  local tol = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(stored[i]) or now
  if tat < now then tat = now end
  tats[i] = tat
  if tat - now + cost * e > tol then allowed = 0 end
end
local result = {allowed, 0}
if allowed == 1 or count_rejected then
  local args = {}
  local ttl = 0
  for i = 1, n do
    local e = tonumber(ARGV[3 * i])
    local tat = tats[i] + cost * e
    if allowed == 0 then
      local cap = now + tonumber(ARGV[3 * i + 1]) + tonumber(ARGV[3 * i + 2])
      if tat > cap then tat = cap end
    end
    tats[i] = tat
    args[2 * i - 1] = fields[i]
    args[2 * i] = string.format('%.0f', tat)
    if tat - now > ttl then ttl = tat - now end
  end
  redis.call('HSET', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], math.floor(ttl / 1000) + 1)
end
for i = 1, n do result[2 + i] = tats[i] - now end
return result
"#;

/// What to do when Redis errors or does not answer in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum OnBackendError {
    /// Fail open: let the request through unchecked.
    Allow,
    /// Fail closed: refuse with 503 Service Unavailable (not 429: the client did
    /// nothing wrong).
    Deny,
    /// Decide with this instance's local store (limits become per instance). The default.
    #[default]
    Local,
}

impl OnBackendError {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Local => "local",
        }
    }
}

type MakeConnection = Arc<dyn Fn() -> Box<dyn ConnectionLike + Send> + Send + Sync>;

#[derive(Clone)]
enum Source {
    Url(redis::Client),
    Custom(MakeConnection),
}

/// The Redis backend's settings (feature `redis`).
///
/// ```no_run
/// use gateway_layers_ratelimit::{OnBackendError, RedisBackend};
/// use std::time::Duration;
///
/// let backend = RedisBackend::new("redis://127.0.0.1:6379/")?
///     .prefix("gw:rl")
///     .timeout(Duration::from_millis(50))
///     .on_error(OnBackendError::Local);
/// # Ok::<(), gateway_layers_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    source: Source,
    prefix: String,
    timeout: Duration,
    on_error: OnBackendError,
    retry_interval: Duration,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .field("retry_interval", &self.retry_interval)
            .finish_non_exhaustive()
    }
}

/// Default per-decision timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Default time Redis is left alone after an error.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(500);

impl RedisBackend {
    /// A backend on `url` (`redis://`, `rediss://` with the redis crate's TLS
    /// features, `unix://`). The connection is opened on the first decision and
    /// re-opened by a [`ConnectionManager`] whenever it breaks.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)
            .map_err(|e| ConfigError::invalid("redis.url", e.to_string()))?;
        Ok(Self::with_source(Source::Url(client)))
    }

    /// A backend on a connection you built: a Redis Cluster connection
    /// (`redis::cluster_async::ClusterConnection`, redis feature `cluster-async`), a
    /// Sentinel-managed one, or any [`ConnectionLike`] that is cheap to clone.
    pub fn from_connection<C>(connection: C) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self::with_source(Source::Custom(Arc::new(move || {
            Box::new(connection.clone())
        })))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "redis.timeout",
                "must be more than zero",
            ));
        }
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                "redis.prefix",
                "must not contain `{` or `}` (the key part is the hash tag)",
            ));
        }
        Ok(())
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            prefix: "ratelimit".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            on_error: OnBackendError::default(),
            retry_interval: DEFAULT_RETRY_INTERVAL,
        }
    }

    /// The namespace of every key (default `ratelimit`): keys are
    /// `{prefix}:{{tier}:{key}}`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest a decision may take, connecting included (default 100 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do on errors and timeouts (default [`OnBackendError::Local`]).
    #[must_use]
    pub fn on_error(mut self, on_error: OnBackendError) -> Self {
        self.on_error = on_error;
        self
    }

    /// After an error, decisions skip Redis (using the `on_error` mode at once) for
    /// this long before trying it again (default 500 ms; zero tries every time).
    #[must_use]
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }
}

/// The backend inside a built layer.
pub(crate) struct RedisState {
    settings: RedisBackend,
    manager: OnceLock<ConnectionManager>,
    script: redis::Script,
    epoch: Instant,
    /// Ticks (ns since `epoch`) before which Redis is not tried.
    down_until: AtomicU64,
}

impl fmt::Debug for RedisState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A connection of either source.
enum Connection {
    Managed(ConnectionManager),
    Custom(Box<dyn ConnectionLike + Send>),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Managed(c) => c.req_packed_command(cmd),
            Self::Custom(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Custom(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(c) => c.get_db(),
            Self::Custom(c) => c.get_db(),
        }
    }
}

impl RedisState {
    pub(crate) fn new(settings: RedisBackend) -> Self {
        Self {
            settings,
            manager: OnceLock::new(),
            script: redis::Script::new(SCRIPT),
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
        }
    }

    fn ticks(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn connection(&self) -> redis::RedisResult<Connection> {
        match &self.settings.source {
            Source::Custom(make) => Ok(Connection::Custom(make())),
            Source::Url(client) => {
                if let Some(m) = self.manager.get() {
                    return Ok(Connection::Managed(m.clone()));
                }
                let timeout = self.settings.timeout;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                Ok(Connection::Managed(
                    self.manager.get_or_init(|| manager).clone(),
                ))
            }
        }
    }
}

/// The Redis decision for one request, run inside the response future.
pub(crate) fn decide(shared: Arc<Shared>, key: Key, policy: u32, cost: u64) -> DecisionFuture {
    Box::pin(async move {
        let Some(redis) = shared.redis.as_ref() else {
            return Outcome::FailOpen;
        };
        let compiled = &shared.policies[policy as usize];
        let started = Instant::now();
        let error = if redis.ticks(started) < redis.down_until.load(Ordering::Relaxed) {
            None
        } else {
            let bucket = format!("{}:{{{}:{}}}", redis.settings.prefix, compiled.tier, key);
            let mut invocation = redis.script.key(bucket);
            invocation.arg(cost).arg(u8::from(shared.count_rejected));
            for w in compiled.remote.iter() {
                invocation.arg(w.emission).arg(w.tolerance).arg(w.length);
            }
            let result = match redis.connection() {
                Ok(mut conn) => {
                    tokio::time::timeout(
                        redis.settings.timeout,
                        invocation.invoke_async::<Vec<i64>>(&mut conn),
                    )
                    .await
                }
                Err(e) => Ok(Err(e)),
            };
            let elapsed = started.elapsed();
            if metrics::enabled() {
                metrics::histogram(
                    "gateway.ratelimit.redis.duration",
                    elapsed.as_secs_f64(),
                    &[("tier", compiled.tier.as_str())],
                );
            }
            match result {
                Ok(Ok(values)) => match parse(&values, &compiled.remote, cost) {
                    Some(verdict) => {
                        return Outcome::Verdict {
                            verdict,
                            tick: Duration::from_micros(1),
                            source: DecisionSource::Redis,
                        };
                    }
                    None => Some("unexpected script reply".to_owned()),
                },
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no reply within {:?}", redis.settings.timeout)),
            }
        };
        if let Some(error) = error {
            let interval =
                u64::try_from(redis.settings.retry_interval.as_nanos()).unwrap_or(u64::MAX);
            let until = redis.ticks(Instant::now()).saturating_add(interval);
            redis.down_until.fetch_max(until, Ordering::Relaxed);
            tracing::warn!(
                name: "ratelimit.backend_error",
                backend = "redis",
                mode = redis.settings.on_error.as_str(),
                error = %error,
                "rate-limit backend failed; using the configured fallback"
            );
            metrics::counter(
                "gateway.ratelimit.backend_errors",
                1,
                &[
                    ("backend", "redis"),
                    ("mode", redis.settings.on_error.as_str()),
                ],
            );
        }
        match redis.settings.on_error {
            OnBackendError::Allow => Outcome::FailOpen,
            OnBackendError::Deny => Outcome::FailClosed,
            OnBackendError::Local => {
                shared.local_outcome(&key, compiled, cost, DecisionSource::LocalFallback)
            }
        }
    })
}

fn parse(values: &[i64], windows: &[gcra::Window], cost: u64) -> Option<gcra::Verdict> {
    if values.len() != windows.len() + 2 {
        return None;
    }
    let allowed = values[0] == 1;
    let aheads = values[2..].iter().map(|&a| u64::try_from(a).unwrap_or(0));
    Some(gcra::summarize(windows, aheads, cost, allowed))
}
