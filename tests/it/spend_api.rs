//! Cost from `prices`, and `/metrics`, `GET /spend` and `switchyard spend` agreeing with the
//! stored runs (CONTRACT §14, issue 29 acceptance 2): `llm` runs on the `anthropic` back-end
//! against a fake Messages API reporting known token counts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Tokens of every fake reply, and the prices (per million) they are charged at.
const USAGE: (u64, u64, u64, u64) = (1_000, 2_000, 10_000, 100);
/// 1000 × 3 + 2000 × 15 + 10000 × 0.25 + 100 × 3.75 = 35875 per million.
const COST: f64 = 0.035875;

/// A fake Anthropic API answering every request through the `respond` tool.
async fn fake_anthropic() -> String {
    let (input, output, read, write) = USAGE;
    let reply = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "tool_use", "id": "t1", "name": "respond", "input": {"summary": "ok"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": read,
                  "cache_creation_input_tokens": write}});
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(move || {
            let reply = reply.clone();
            async move { axum::Json(reply) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The value of the `/metrics` sample whose line starts with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{metrics}"))
}

#[tokio::test]
async fn anthropic_tokens_times_prices_and_every_view_of_spend_agree() {
    let base = fake_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"version": 1,
            "mappings": [{"provider": "unknown", "action": "summarise", "handler_mode": "llm",
                          "handler_target": "anthropic:claude-test"}],
            "prices": {"claude-test": {"input_per_mtok": 3, "output_per_mtok": 15,
                                       "cache_read_per_mtok": 0.25, "cache_creation_per_mtok": 3.75}}})
        .to_string(),
    )
    .unwrap();
    let config = config.display().to_string();
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("APP_CONFIG_PATH", config.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-spend"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("ADMIN_SECRET", "admin"),
        ],
    );
    let mut costs = Vec::new();
    for i in 0..3 {
        let (_, v) = app.post("/webhook", &format!(r#"{{"n": {i}}}"#), &[]).await;
        let ev = app
            .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(20))
            .await;
        let usage = &ev["action_runs"][0]["usage"];
        assert_eq!(
            usage["cost_usd"].as_f64(),
            Some(COST),
            "tokens × prices, exactly: {usage}"
        );
        assert_eq!(usage["input_tokens"], USAGE.0);
        assert_eq!(usage["cache_read_tokens"], USAGE.2);
        assert_eq!(usage["model"], "claude-test");
        assert_eq!(usage["stop"], "tool_use");
        costs.push(usage["cost_usd"].as_f64().unwrap());
    }
    let stored: f64 = costs.iter().sum();

    let (code, spend) = app
        .get("/spend?since=1d&by=action", &[("x-admin-secret", "admin")])
        .await;
    assert_eq!(code, 200, "{spend}");
    assert_eq!(spend["runs"], 3, "{spend}");
    assert!((spend["total_usd"].as_f64().unwrap() - stored).abs() < 1e-12, "{spend}");
    assert_eq!(spend["groups"][0]["key"], "summarise");
    assert_eq!(spend["groups"][0]["tokens"]["output"], 3 * USAGE.1);
    let (_, by_model) = app.get("/spend?by=model", &[("x-admin-secret", "admin")]).await;
    assert_eq!(by_model["groups"][0]["key"], "claude-test", "{by_model}");
    let (code, bad) = app.get("/spend?by=week", &[("x-admin-secret", "admin")]).await;
    assert_eq!(code, 400, "{bad}");
    let (code, _) = app.get("/spend", &[]).await;
    assert_eq!(code, 401);

    let metrics = metrics_text(&app).await;
    let cost = sample(
        &metrics,
        r#"switchyard_llm_cost_usd_total{action="summarise",model="claude-test"}"#,
    );
    assert!((cost - stored).abs() < 1e-12, "{metrics}");
    let input = sample(
        &metrics,
        r#"switchyard_llm_tokens_total{action="summarise",kind="input"}"#,
    );
    assert_eq!(input, 3.0 * USAGE.0 as f64);
    assert!(
        metrics.contains("# TYPE switchyard_llm_cost_usd_total counter"),
        "{metrics}"
    );

    let out = run_cli(dir.path(), &["spend", "--since", "1d", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cli: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cli["runs"], 3);
    assert!((cli["total_usd"].as_f64().unwrap() - stored).abs() < 1e-12, "{cli}");
    let table = run_cli(dir.path(), &["spend", "--by", "model"], &[]);
    assert!(stdout(&table).contains("claude-test"), "{}", stdout(&table));
    let bad = run_cli(dir.path(), &["spend", "--since", "soon"], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
