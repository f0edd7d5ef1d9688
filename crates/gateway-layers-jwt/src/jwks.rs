//! Remote JWKS: one shared background refresher per URL, OIDC discovery.
//!
//! [`RemoteJwks::shared`] returns the same refresher for the same URL in the whole
//! process, however many layers or routes use it. The refresher fetches the document
//! when first needed, again `refresh_ahead` before `ttl` runs out, and after failures
//! with exponential backoff (the last good keys stay in use meanwhile). A token whose
//! `kid` is unknown may trigger one early refetch per `unknown_kid_cooldown`; other
//! unknown kids in that window are refused at once, so random kids cannot cause a
//! fetch storm. Redirects are not followed and the document size is bounded.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, OnceLock, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use gateway_layers_core::ConfigError;
use http::{Request, Uri, header::ACCEPT};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::keys::KeySet;

/// A boxed fetch: `GET url` returning the body, or a reason.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;

/// Fetches a URL; the default uses hyper-util's client over plain HTTP. Plug an HTTPS
/// client here (for example hyper-util's client with a TLS connector).
pub type Fetcher = Arc<dyn Fn(Uri, Duration, usize) -> FetchFuture + Send + Sync>;

/// Timing and size limits of a remote JWKS.
#[derive(Clone)]
pub struct JwksOptions {
    /// How long a fetched document is fresh. Default 5 minutes.
    pub ttl: Duration,
    /// Refetch this long before `ttl` runs out. Default 30 s.
    pub refresh_ahead: Duration,
    /// First backoff after a failed fetch, doubled per failure. Default 1 s.
    pub min_backoff: Duration,
    /// Longest backoff. Default 60 s.
    pub max_backoff: Duration,
    /// Limit for one fetch (connect, headers and body). Default 5 s.
    pub fetch_timeout: Duration,
    /// At most one refetch triggered by an unknown `kid` per this period. Default 30 s.
    pub unknown_kid_cooldown: Duration,
    /// Largest document accepted. Default 512 KiB.
    pub max_document_bytes: usize,
    /// The HTTP fetcher (default: hyper-util legacy client, plain HTTP).
    pub fetcher: Option<Fetcher>,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            refresh_ahead: Duration::from_secs(30),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
            unknown_kid_cooldown: Duration::from_secs(30),
            max_document_bytes: 512 * 1024,
            fetcher: None,
        }
    }
}

impl fmt::Debug for JwksOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksOptions")
            .field("ttl", &self.ttl)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("unknown_kid_cooldown", &self.unknown_kid_cooldown)
            .field("max_document_bytes", &self.max_document_bytes)
            .finish_non_exhaustive()
    }
}

fn default_fetcher() -> Fetcher {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    Arc::new(move |uri: Uri, timeout: Duration, max_bytes: usize| {
        let client = client.clone();
        Box::pin(async move {
            let request = Request::get(uri)
                .header(ACCEPT, "application/json")
                .body(Empty::new())
                .map_err(|e| e.to_string())?;
            let work = async {
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("status {}", response.status()));
                }
                Limited::new(response.into_body(), max_bytes)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err("timed out".to_owned()),
            }
        }) as FetchFuture
    })
}

enum Target {
    Jwks(Uri),
    Discovery { issuer: String, config_url: Uri },
}

struct State {
    keys: Option<Arc<KeySet>>,
    generation: u64,
    jwks_uri: Option<Uri>,
    last_forced: Option<Instant>,
    failures: u32,
}

struct Inner {
    name: String,
    target: Target,
    options: JwksOptions,
    fetcher: Fetcher,
    state: RwLock<State>,
    attempts: watch::Sender<u64>,
    wake: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
    running: AtomicBool,
}

/// Clears `running` when the refresher ends or its runtime drops it.
struct RunningGuard(Weak<Inner>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.running.store(false, Ordering::Release);
        }
    }
}

/// A remote JWKS (or OIDC issuer) with its shared background refresher.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("source", &self.inner.name)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

type Registry = Mutex<HashMap<String, Weak<Inner>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn parse_http_uri(field: &'static str, url: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ConfigError::invalid(field, format!("{url:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(ConfigError::invalid(
            field,
            "only absolute http(s) URLs are accepted",
        )),
    }
}

/// The built-in fetcher speaks plain HTTP only: an `https` URL without a custom
/// fetcher would fail at every fetch, so it is refused when the layer is built.
fn require_tls_fetcher(
    field: &'static str,
    uri: &Uri,
    options: &JwksOptions,
) -> Result<(), ConfigError> {
    if uri.scheme_str() == Some("https") && options.fetcher.is_none() {
        return Err(ConfigError::invalid(
            field,
            "https needs a TLS-capable fetcher: set `JwksOptions::fetcher`",
        ));
    }
    Ok(())
}

impl RemoteJwks {
    /// The shared refresher for the JWKS at `url` (created on first use, with
    /// `options`; later callers share it and its options). `https` URLs need
    /// [`JwksOptions::fetcher`].
    pub fn shared(url: &str, options: JwksOptions) -> Result<Self, ConfigError> {
        let uri = parse_http_uri("jwt.jwks_url", url)?;
        require_tls_fetcher("jwt.jwks_url", &uri, &options)?;
        Ok(Self::register(
            format!("jwks {url}"),
            Target::Jwks(uri),
            options,
        ))
    }

    /// The shared refresher for an OIDC issuer: the JWKS URL is read from
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must equal `issuer`.
    pub fn discover(issuer: &str, options: JwksOptions) -> Result<Self, ConfigError> {
        let config_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let config_url = parse_http_uri("jwt.oidc_issuer", &config_url)?;
        require_tls_fetcher("jwt.oidc_issuer", &config_url, &options)?;
        Ok(Self::register(
            format!("oidc {issuer}"),
            Target::Discovery {
                issuer: issuer.to_owned(),
                config_url,
            },
            options,
        ))
    }

    fn register(name: String, target: Target, options: JwksOptions) -> Self {
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(inner) = map.get(&name).and_then(Weak::upgrade) {
            return Self { inner };
        }
        let fetcher = options.fetcher.clone().unwrap_or_else(default_fetcher);
        let inner = Arc::new(Inner {
            name: name.clone(),
            target,
            options,
            fetcher,
            state: RwLock::new(State {
                keys: None,
                generation: 0,
                jwks_uri: None,
                last_forced: None,
                failures: 0,
            }),
            attempts: watch::channel(0).0,
            wake: Arc::new(Notify::new()),
            task: Mutex::new(None),
            running: AtomicBool::new(false),
        });
        map.insert(name, Arc::downgrade(&inner));
        Self { inner }
    }

    /// The current keys, if a fetch succeeded, and their generation.
    pub fn current(&self) -> Option<(Arc<KeySet>, u64)> {
        self.ensure_started();
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state.keys.clone().map(|k| (k, state.generation))
    }

    /// Increases whenever fetched keys differ from the previous ones (rotation).
    pub fn generation(&self) -> u64 {
        self.inner
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Fetch attempts so far.
    pub fn attempts(&self) -> u64 {
        *self.inner.attempts.borrow()
    }

    /// Starts the refresher if it is not running (needs a Tokio runtime).
    pub fn ensure_started(&self) {
        if self.inner.running.load(Ordering::Acquire) {
            return;
        }
        let mut task = self.inner.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let wake = self.inner.wake.clone();
        self.inner.running.store(true, Ordering::Release);
        // The guard lives in the future: dropped with it, even if never polled.
        let guard = RunningGuard(weak.clone());
        *task = Some(handle.spawn(async move {
            let _running = guard;
            refresher(weak, wake).await;
        }));
    }

    /// Asks for an early refetch, at most once per cooldown; whether one was asked.
    pub(crate) fn request_refresh(&self) -> bool {
        {
            let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if let Some(last) = state.last_forced
                && now.duration_since(last) < self.inner.options.unknown_kid_cooldown
            {
                return false;
            }
            state.last_forced = Some(now);
        }
        tracing::debug!(target: "gateway::jwt", event = "jwt.jwks.refresh_requested", source = %self.inner.name);
        self.inner.wake.notify_one();
        true
    }

    /// Waits (bounded by the fetch timeout) for the next fetch attempt to finish.
    pub(crate) async fn wait_next_attempt(&self, seen: u64) {
        let mut rx = self.inner.attempts.subscribe();
        let limit = self
            .inner
            .options
            .fetch_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_millis(100));
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n > seen)).await;
    }

    /// Keys for a request: waits for the first fetch when none has finished yet.
    pub(crate) async fn keys_or_wait(&self) -> Option<(Arc<KeySet>, u64)> {
        if let Some(found) = self.current() {
            return Some(found);
        }
        let seen = self.attempts();
        if seen == 0 || self.request_refresh() {
            self.wait_next_attempt(seen).await;
        }
        self.current()
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let options = &self.inner.options;
        let jwks_uri = match &self.inner.target {
            Target::Jwks(uri) => uri.clone(),
            Target::Discovery { issuer, config_url } => {
                let known = self
                    .inner
                    .state
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .jwks_uri
                    .clone();
                match known {
                    Some(uri) => uri,
                    None => {
                        let body = (self.inner.fetcher)(
                            config_url.clone(),
                            options.fetch_timeout,
                            options.max_document_bytes,
                        )
                        .await?;
                        let doc: Value =
                            serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                        if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
                            return Err("discovery document names another issuer".into());
                        }
                        let url = doc
                            .get("jwks_uri")
                            .and_then(Value::as_str)
                            .ok_or("discovery document has no jwks_uri")?;
                        let uri = parse_http_uri("jwks_uri", url).map_err(|e| e.to_string())?;
                        self.inner
                            .state
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .jwks_uri = Some(uri.clone());
                        uri
                    }
                }
            }
        };
        let body =
            (self.inner.fetcher)(jwks_uri, options.fetch_timeout, options.max_document_bytes)
                .await?;
        KeySet::from_jwks_bytes(&body, false).map_err(|e| e.to_string())
    }
}

async fn refresher(weak: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let jwks = RemoteJwks { inner };
        let result = jwks.fetch().await;
        let delay = {
            let options = &jwks.inner.options;
            let mut state = jwks.inner.state.write().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(set) => {
                    let changed = state.keys.as_ref().is_none_or(|old| !old.same_keys(&set));
                    if changed {
                        state.generation += 1;
                        state.keys = Some(Arc::new(set));
                        tracing::info!(target: "gateway::jwt", event = "jwt.jwks.updated", source = %jwks.inner.name, generation = state.generation);
                    }
                    state.failures = 0;
                    gateway_layers_core::metrics::counter(
                        "gateway.jwt.jwks_fetches",
                        1,
                        &[("outcome", "ok")],
                    );
                    options
                        .ttl
                        .saturating_sub(options.refresh_ahead)
                        .max(Duration::from_secs(1))
                }
                Err(error) => {
                    state.failures = state.failures.saturating_add(1);
                    if matches!(jwks.inner.target, Target::Discovery { .. }) {
                        state.jwks_uri = None;
                    }
                    tracing::warn!(target: "gateway::jwt", event = "jwt.jwks.fetch_failed", source = %jwks.inner.name, %error, failures = state.failures);
                    gateway_layers_core::metrics::counter(
                        "gateway.jwt.jwks_fetches",
                        1,
                        &[("outcome", "error")],
                    );
                    let exp = state.failures.saturating_sub(1).min(16);
                    options
                        .min_backoff
                        .saturating_mul(1u32 << exp)
                        .min(options.max_backoff)
                }
            }
        };
        jwks.inner.attempts.send_modify(|n| *n += 1);
        drop(jwks);
        // Hold no strong reference while sleeping: when every user is gone, stop.
        let _ = tokio::time::timeout(delay, wake.notified()).await;
    }
}
