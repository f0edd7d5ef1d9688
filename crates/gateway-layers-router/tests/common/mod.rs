#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;

use gateway_layers_core::ext::{PathParams, RawPath, RouteName};
use gateway_layers_router::{Route, Router, SplitBackend};
use http::{Request, Response};
use tower::{ServiceExt, service_fn, util::BoxCloneSyncService};

pub type Svc = BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

/// What a route's service received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub route: String,
    pub backend: Option<String>,
    pub path: String,
    pub query: Option<String>,
    pub host: Option<String>,
    pub raw: Option<String>,
    pub params: Vec<(String, String)>,
}

/// A service answering with a JSON description of what it received.
pub fn echo(label: &'static str) -> Svc {
    BoxCloneSyncService::new(service_fn(move |req: Request<String>| async move {
        let ext = req.extensions();
        let params: Vec<(String, String)> = ext
            .get::<PathParams>()
            .map(|p| {
                p.0.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let seen = serde_json::json!({
            "label": label,
            "route": ext.get::<RouteName>().map(|r| r.0.to_string()),
            "backend": ext.get::<SplitBackend>().map(|b| b.0.to_string()),
            "path": req.uri().path(),
            "query": req.uri().query(),
            "host": req.headers().get("host").map(|h| h.to_str().unwrap().to_string()),
            "raw": ext.get::<RawPath>().map(|r| r.0.to_string()),
            "params": params,
        });
        Ok::<_, Infallible>(Response::new(seen.to_string()))
    }))
}

pub fn route(name: &'static str) -> Route<String, String, Infallible> {
    Route::new(name)
}

/// Sends a request; `Ok(seen)` when a route answered, `Err(status, allow)` otherwise.
pub async fn send(
    router: &Router<String, String>,
    request: Request<String>,
) -> Result<Seen, (u16, Option<String>)> {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let allow = response
        .headers()
        .get("allow")
        .map(|a| a.to_str().unwrap().to_string());
    let body = response.into_body();
    if body.is_rejection() {
        return Err((status, allow));
    }
    let text = body.into_inner().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = |k: &str| v[k].as_str().map(str::to_string);
    Ok(Seen {
        route: s("route").unwrap_or_else(|| format!("<{}>", s("label").unwrap())),
        backend: s("backend"),
        path: s("path").unwrap(),
        query: s("query"),
        host: s("host"),
        raw: s("raw"),
        params: v["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    })
}

pub fn request(
    method: &str,
    host: Option<&str>,
    target: &str,
    headers: &[(&str, &str)],
) -> Request<String> {
    let mut builder = Request::builder().method(method).uri(target);
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(String::new()).unwrap()
}
