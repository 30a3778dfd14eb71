//! `/stats` and `/routes`: what the mirror is doing and where it sends
//! requests, as JSON, for people and for the dashboard (`/dashboard`, a
//! page served from the binary that draws `/stats` every two seconds). `/stats` carries
//! the fields operators of the older proxies read (`requests`, `errors`,
//! `timeouts`, `bytesTransferred`, `errorRate`, `timeoutRate`,
//! `lastTimeout`, `timestamp`), then the cache's hit ratio (also per
//! minute over the last hour), its size against its cap, the downloads
//! running, each upstream's totals and mirror health, the repositories
//! asked for most and the last errors, and in a cluster the replicas,
//! Redis and the downloads the fleet runs. Neither shows a credential.

use crate::HttpState;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_upstream::{MirrorHealth, UpstreamSet};
use http::header;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The dashboard: one page, no assets from elsewhere, reading `/stats`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// `/stats`, `/routes` and `/dashboard`.
pub fn ops_routes(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/routes", get(routes))
        .route("/dashboard", get(dashboard))
        .with_state(state)
}

async fn dashboard(State(state): State<Arc<HttpState>>) -> Response {
    crate::count(&state.metrics, "dashboard", 200);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'",
            ),
        ],
        DASHBOARD,
    )
        .into_response()
}

fn iso(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn json_answer(value: &Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

fn mirrors(health: &[MirrorHealth]) -> Vec<Value> {
    health
        .iter()
        .map(|m| {
            json!({
                "url": m.url,
                "state": m.state.as_str(),
                "latencyMs": (m.latency_ms * 10.0).round() / 10.0,
                "errorRate": (m.error_rate * 1000.0).round() / 1000.0,
            })
        })
        .collect()
}

async fn stats(State(state): State<Arc<HttpState>>) -> Response {
    crate::count(&state.metrics, "stats", 200);
    let s = &state.metrics.stats;
    let (requests, errors, timeouts, bytes) = s.totals();
    let (hits, misses) = s.hits_and_misses();
    let usage = state.pull.store_usage();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let totals = s.upstreams();
    let live = state.live();
    let upstreams: Vec<Value> = live
        .origins
        .upstreams()
        .all()
        .iter()
        .map(|u| {
            let t = totals
                .iter()
                .find(|(name, _)| name == u.name())
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            json!({
                "name": u.name(),
                "requests": t.requests,
                "errors": t.errors,
                "bytes": t.bytes,
                "mirrors": mirrors(&u.mirror_health()),
            })
        })
        .collect();
    let mut body = json!({
        "requests": requests,
        "errors": errors,
        "timeouts": timeouts,
        "bytesTransferred": bytes,
        "errorRate": ratio(errors, requests),
        "timeoutRate": ratio(timeouts, requests),
        "lastTimeout": s.last_timeout_ms().map(iso),
        "averageDurationMs": s.average_duration_ms().map(|ms| (ms * 10.0).round() / 10.0),
        "timestamp": iso(now_ms),
        "cache": {
            "hits": hits,
            "misses": misses,
            "hitRatio": ratio(hits, hits + misses),
            "perMinute": s.minutes().iter().map(|m| json!({
                "at": iso(m.minute * 60_000),
                "hits": m.hits,
                "misses": m.misses,
            })).collect::<Vec<_>>(),
            "usedBytes": usage.bytes,
            "capBytes": usage.cap,
            "downloadsInFlight": state.pull.fills_in_flight().iter().map(|f| json!({
                "digest": f.digest.to_string(),
                "receivedBytes": f.received,
                "sizeBytes": f.size,
            })).collect::<Vec<_>>(),
        },
        "upstreams": upstreams,
        "topRepositories": s.top_repositories(10).into_iter().map(|(name, n)| json!({
            "name": name,
            "requests": n,
        })).collect::<Vec<_>>(),
        "recentErrors": s.recent_errors().into_iter().rev().map(|e| json!({
            "at": iso(e.at_ms),
            "status": e.status,
            "route": e.route,
            "target": e.target,
        })).collect::<Vec<_>>(),
    });
    if let Some(cluster) = &state.cluster {
        body["cluster"] = cluster.snapshot().await;
    }
    json_answer(&body)
}

/// The routing table, as admission reads it.
pub(crate) fn routing_table(upstreams: &UpstreamSet, domain: Option<&str>) -> Value {
    let all: Vec<Value> = upstreams
        .all()
        .iter()
        .map(|u| {
            let c = u.config();
            json!({
                "name": c.name,
                "url": c.url.as_str(),
                "default": c.default,
                "autoLibrary": c.auto_library,
                "aliases": c.aliases,
                "hostPrefix": c.host_prefix,
                "host": match (&c.host_prefix, domain) {
                    (Some(p), Some(d)) => Some(format!("{p}.{d}")),
                    _ => None,
                },
                "authMode": c.auth_mode.as_str(),
                "push": c.push,
                "mirrors": mirrors(&u.mirror_health()),
            })
        })
        .collect();
    json!({
        "domain": domain,
        "default": upstreams.default_upstream().map(|u| u.name()),
        "upstreams": all,
    })
}

async fn routes(State(state): State<Arc<HttpState>>) -> Response {
    crate::count(&state.metrics, "routes", 200);
    let live = state.live();
    json_answer(&routing_table(
        live.origins.upstreams(),
        live.domain.as_deref(),
    ))
}
