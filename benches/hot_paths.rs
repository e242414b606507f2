//! Micro-benchmarks of the pure functions on switchyard's hot paths (`cargo bench`).
//!
//! Ingest runs `envelope::build` (which derives the event id) once per webhook; the worker
//! runs detection, rule evaluation and `decide` once per event, plus the JSON parse of the
//! stored payload and the serialisation of the result, which `worker_pure_cpu` measures
//! together. The bodies are the ones `bench/run.sh` sends, so the figures line up with
//! the end-to-end table in docs/PERFORMANCE.md.

use std::hint::black_box;

use axum::http::{HeaderMap, HeaderValue};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchyard::domain::{HandlerMode, Mapping, Rule};
#[path = "../examples/loadbench/body.rs"]
mod body;

use switchyard::ingest::envelope::{RequestParts, build};
use switchyard::ingest::event_id::derive_event_id;
use switchyard::routing::detect::{Detection, apply_hint, detect};
use switchyard::routing::{CompiledRule, Condition, decide};

/// The ~500-byte body of bench/ingest.lua with one id filled in.
fn bench_body() -> Vec<u8> {
    body::bench_body("bench-run-t1-123456").into_bytes()
}

/// The headers wrk sends with that body.
fn bench_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
    h.insert("content-length", HeaderValue::from_static("553"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-event-id", HeaderValue::from_static("bench-run-t1-123456"));
    h
}

/// A GitHub push as GitHub sends it (more headers, a larger body).
fn github_request() -> (HeaderMap, Vec<u8>) {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "hooks.example.com"),
        ("user-agent", "GitHub-Hookshot/abc1234"),
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-github-hook-id", "292430182"),
        (
            "x-hub-signature-256",
            "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c",
        ),
        ("accept", "*/*"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    let commits: Vec<Value> = (0..3)
        .map(|i| {
            json!({"id": format!("{i:040x}"), "message": "Fix the flux capacitor", "timestamp": "2024-06-10T12:00:00Z",
                   "author": {"name": "Jane Doe", "email": "jane@example.com"}, "added": [], "removed": [],
                   "modified": ["src/lib.rs", "README.md"]})
        })
        .collect();
    let body = json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": "1".repeat(40),
        "repository": {"id": 1296269, "full_name": "octocat/Hello-World", "private": false,
                       "owner": {"login": "octocat", "id": 1}},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "commits": commits, "head_commit": {"id": "1".repeat(40)}
    });
    (h, serde_json::to_vec(&body).unwrap_or_default())
}

/// The stored envelope of a request, parsed as the worker sees it.
fn payload_of(hint: Option<&str>, headers: &HeaderMap, body: &[u8]) -> (String, Value) {
    let env = build(&RequestParts {
        hint,
        method: "POST",
        path: "/webhook",
        query: None,
        headers,
        body,
        store_sensitive_headers: false,
    })
    .expect("the bench's ids are short and UTF-8");
    let v = serde_json::from_str(&env.payload_json).unwrap_or(Value::Null);
    (env.payload_json, v)
}

fn rule(id: i64, provider: &str, name: &str, priority: i64, cond: Value, action: &str) -> CompiledRule {
    let rule = Rule {
        id,
        provider: provider.into(),
        name: name.into(),
        priority,
        conditions_json: cond.to_string(),
        action: action.into(),
        handler_mode: HandlerMode::Noop,
        handler_target: None,
        enabled: true,
        continue_after_match: false,
        flow: None,
    };
    CompiledRule {
        conditions: Condition::parse(&cond).unwrap_or(Condition::Any(Vec::new())),
        rule,
    }
}

/// Ten GitHub rules; the push to main is matched by the last one, so `decide` evaluates all.
fn github_rules() -> Vec<CompiledRule> {
    let mut rules: Vec<CompiledRule> = (0..9)
        .map(|i| {
            rule(
                i,
                "github",
                &format!("other-{i}"),
                i,
                json!({"all": [{"op": "header_equals", "name": "x-github-event", "value": format!("event_{i}")},
                               {"op": "json_path_exists", "path": "pull_request.number"}]}),
                "other",
            )
        })
        .collect();
    rules.push(rule(9, "github", "push-main", 100, push_main_conditions(), "deploy"));
    rules
}

fn push_main_conditions() -> Value {
    json!({"all": [
        {"op": "header_equals", "name": "x-github-event", "value": "push"},
        {"op": "json_path_equals", "path": "ref", "value": "refs/heads/main"},
        {"op": "json_path_regex", "path": "repository.full_name", "pattern": "^octocat/"},
        {"any": [{"op": "json_path_exists", "path": "commits.0.id"}, {"op": "header_present", "name": "x-github-hook-id"}]}
    ]})
}

fn ingest(c: &mut Criterion) {
    let body = bench_body();
    let headers = bench_headers();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("envelope_build_bench_body", |b| {
        b.iter(|| {
            build(black_box(&RequestParts {
                hint: None,
                method: "POST",
                path: "/webhook",
                query: None,
                headers: &headers,
                body: &body,
                store_sensitive_headers: false,
            }))
        })
    });
    let (gh_headers, gh_body) = github_request();
    g.throughput(Throughput::Bytes(gh_body.len() as u64));
    g.bench_function("envelope_build_github_push", |b| {
        b.iter(|| {
            build(black_box(&RequestParts {
                hint: Some("github"),
                method: "POST",
                path: "/webhook/github",
                query: Some("a=1&b=2"),
                headers: &gh_headers,
                body: &gh_body,
                store_sensitive_headers: false,
            }))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("event_id");
    let json_id = json!({"id": "evt_1234567890abcdef"});
    g.bench_function("header", |b| {
        b.iter(|| derive_event_id(black_box(Some("bench-run-t1-123456")), None, None, black_box(&body)))
    });
    g.bench_function("json_id", |b| {
        b.iter(|| derive_event_id(None, None, black_box(Some(&json_id)), black_box(&body)))
    });
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("sha256_of_body", |b| {
        b.iter(|| derive_event_id(None, None, None, black_box(&body)))
    });
    g.finish();
}

/// The requests every routing benchmark reads: the benchmark body and a GitHub push, as
/// stored payloads (text and parsed) and their header maps.
struct Fixtures {
    bench_text: String,
    bench_payload: Value,
    bench_h: serde_json::Map<String, Value>,
    gh_text: String,
    gh_payload: Value,
    gh_h: serde_json::Map<String, Value>,
    noop: Mapping,
}

impl Fixtures {
    fn new() -> Fixtures {
        let (bench_text, bench_payload) = payload_of(None, &bench_headers(), &bench_body());
        let (gh_headers, gh_body) = github_request();
        let (gh_text, gh_payload) = payload_of(Some("github"), &gh_headers, &gh_body);
        let headers_of = |p: &Value| p.get("headers").and_then(Value::as_object).cloned().unwrap_or_default();
        Fixtures {
            bench_h: headers_of(&bench_payload),
            gh_h: headers_of(&gh_payload),
            bench_text,
            bench_payload,
            gh_text,
            gh_payload,
            noop: Mapping {
                provider: "unknown".into(),
                action: "bench_noop".into(),
                handler_mode: HandlerMode::Noop,
                handler_target: None,
                enabled: true,
                flow: None,
            },
        }
    }

    /// The GitHub push's detection, hint applied.
    fn github_detection(&self) -> Detection {
        let mut d = detect(&self.gh_h, self.gh_payload.get("json"));
        apply_hint(&mut d, Some("github"));
        d
    }
}

fn routing(c: &mut Criterion) {
    let f = Fixtures::new();
    detection(c, &f);
    rule_conditions(c, &f);
    decisions(c, &f);
    worker_pure_cpu(c, &f);
}

fn detection(c: &mut Criterion, f: &Fixtures) {
    let empty = serde_json::Map::new();
    let mut g = c.benchmark_group("detect");
    g.bench_function("unknown_fallthrough", |b| {
        b.iter(|| {
            let mut d = detect(black_box(&f.bench_h), f.bench_payload.get("json"));
            apply_hint(&mut d, None);
            d
        })
    });
    g.bench_function("github_header", |b| {
        b.iter(|| {
            let mut d = detect(black_box(&f.gh_h), f.gh_payload.get("json"));
            apply_hint(&mut d, Some("github"));
            d
        })
    });
    g.bench_function("no_headers", |b| b.iter(|| detect(black_box(&empty), None)));
    g.finish();
}

fn rule_conditions(c: &mut Criterion, f: &Fixtures) {
    let mut g = c.benchmark_group("rules");
    let cond_json = push_main_conditions();
    let cond_text = cond_json.to_string();
    g.bench_function("parse_4_leaves_with_regex", |b| {
        b.iter(|| Condition::parse_str(black_box(&cond_text)))
    });
    let cond = Condition::parse(&cond_json).unwrap_or(Condition::Any(Vec::new()));
    g.bench_function("evaluate_match_4_leaves", |b| {
        b.iter(|| cond.evaluate(black_box(&f.gh_payload)))
    });
    g.bench_function("evaluate_miss_first_leaf", |b| {
        b.iter(|| cond.evaluate(black_box(&f.bench_payload)))
    });
    g.finish();
}

fn decisions(c: &mut Criterion, f: &Fixtures) {
    let mut g = c.benchmark_group("decide");
    let rules = github_rules();
    let github_detection = f.github_detection();
    g.bench_function("10_rules_last_matches", |b| {
        b.iter(|| decide(black_box(&f.gh_payload), github_detection.clone(), &rules, None))
    });
    let unknown_detection = detect(&f.bench_h, f.bench_payload.get("json"));
    g.bench_function("mapping_only", |b| {
        b.iter(|| {
            decide(
                black_box(&f.bench_payload),
                unknown_detection.clone(),
                &[],
                Some(&f.noop),
            )
        })
    });
    g.finish();
}

/// What a worker computes per event outside SQL: parse the stored payload, route it,
/// serialise the router decision and the stored result.
fn worker_pure_cpu(c: &mut Criterion, f: &Fixtures) {
    let rules = github_rules();
    let route = |text: &str, rules: &[CompiledRule], mapping: Option<&Mapping>| {
        let empty = serde_json::Map::new();
        let payload: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let hs = payload.get("headers").and_then(Value::as_object).unwrap_or(&empty);
        let mut d = detect(hs, payload.get("json").filter(|j| j.is_object()));
        apply_hint(&mut d, payload.get("source_hint").and_then(Value::as_str));
        let decision = decide(&payload, d, rules, mapping);
        let router = serde_json::to_value(&decision).unwrap_or(Value::Null);
        let result = json!({"ok": true, "source": "webhook", "event_id": "x", "router": router,
                            "result": {"mode": "noop", "action": decision.mapped_action}});
        result.to_string()
    };
    let mut g = c.benchmark_group("worker_pure_cpu");
    g.bench_function("github_push_10_rules", |b| {
        b.iter(|| route(black_box(&f.gh_text), &rules, None))
    });
    g.bench_function("bench_body_noop_mapping", |b| {
        b.iter(|| route(black_box(&f.bench_text), &[], Some(&f.noop)))
    });
    g.finish();
}

criterion_group!(benches, ingest, routing);
criterion_main!(benches);
