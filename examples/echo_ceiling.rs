//! The benchmark's ceiling: a minimal axum server that echoes the request body.
//!
//! It has switchyard's routes and HTTP stack (axum 0.8 on hyper's HTTP/1, a multi-thread
//! tokio runtime, TCP_NODELAY) but does no work, so the load generator's figure against it
//! is what this machine and client can do at all. `bench/run.sh` drives both with the same
//! client settings and reports switchyard's throughput as a ratio of this one.
//!
//! Binds 127.0.0.1:0 (or the port given as the first argument) and prints the port on
//! stdout, then serves until killed.

use std::io::Write;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::serve::ListenerExt;

/// Echoes the body as JSON, like a webhook receiver that stores nothing.
async fn echo(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{port}")?;
        out.flush()?;
    }
    // switchyard sets TCP_NODELAY on every connection; so does the ceiling.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new()
        .route("/webhook", post(echo))
        .route("/webhook/{hint}", post(echo));
    axum::serve(listener, app).await
}
