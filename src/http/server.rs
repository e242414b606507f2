//! The accept loop: hyper's HTTP/1 server with a header-read timeout, a connection cap and
//! graceful shutdown.
//!
//! `axum::serve` has neither a header-read timeout nor a connection cap, so a client that
//! trickles its headers could pin a connection forever and many clients could exhaust the
//! process's file descriptors; hyper's builder with a timer and a semaphore bound both.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::error::Refusal;
use crate::settings::Settings;

/// How long open connections get to finish their request after shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Limits of every client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time a client has to send its request headers (`HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout: Duration,
    /// Most connections served at once (`MAX_CONNECTIONS`); further ones wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
}

/// The address of the client that sent a request (in the extensions of `/ui/login` only).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Warns once per unset `INGRESS_SECRET` / `ADMIN_SECRET` when `addr` is reachable from
/// other machines: the routes they guard are then open to anyone who can connect.
pub fn warn_unprotected(addr: SocketAddr, settings: &Settings) {
    if addr.ip().is_loopback() {
        return;
    }
    if settings.ingress_secret.is_none() {
        tracing::warn!(%addr, "INGRESS_SECRET is unset: anyone who can reach this address can queue webhooks and cron events");
    }
    if settings.admin_secret.is_none() {
        tracing::warn!(%addr, "ADMIN_SECRET is unset: anyone who can reach this address can read, replay and cancel every stored event (the API and the dashboard)");
    }
}

/// Answers one request of the client at `peer`, and logs one `info` line when it is refused:
/// status, reason, method, path, remote address. Secrets cannot appear: the reason is our
/// own message and no header value is logged. Done here rather than as a router middleware,
/// which cost a boxed service and a boxed future per request (issue 18).
async fn respond(router: Router, request: Request<Incoming>, peer: SocketAddr) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let mut request = request;
    // Only the login needs the client's address (its throttle): other requests skip the
    // extension map's allocation.
    if uri.path() == "/ui/login" {
        request.extensions_mut().insert(ClientAddr(peer));
    }
    let mut response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // JSON replies must not be sniffed as anything else (CONTRACT §11); pages set it too.
    response
        .headers_mut()
        .entry(X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if let Some(refusal) = response.extensions().get::<Refusal>() {
        tracing::info!(
            status = response.status().as_u16(),
            reason = refusal.0.as_str(),
            %method,
            path = %crate::escape::escaped(uri.path()),
            remote = %peer,
            "request refused"
        );
    }
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains connections.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnLimits, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut at_cap = false;
    loop {
        // A slot first, then accept: at the cap new clients wait in the kernel's backlog
        // instead of costing us a descriptor and a task each.
        if slots.available_permits() == 0 && !at_cap {
            tracing::warn!(
                max = limits.max_connections,
                "MAX_CONNECTIONS reached; new connections wait"
            );
        }
        at_cap = slots.available_permits() == 0;
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed, so this only guards against a future change.
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            async move { Ok::<_, Infallible>(respond(router, request, peer).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are client-side (reset, timeout, malformed request).
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain period; closing"),
    }
}
