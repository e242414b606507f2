//! `GET /healthz`.

use axum::Json;
use serde_json::{Value, json};

/// Liveness: `{"ok": true}`.
pub async fn healthz() -> Json<Value> {
    Json(json!({"ok": true}))
}
