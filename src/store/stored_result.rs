//! An event's stored result (`result_json`), written without what its row already holds.
//!
//! CONTRACT §3's result is `{"event_id", ["idempotent_replay"], "ok": true, "result",
//! "router": {…}, "source"}`. Only a `done` attempt stores one, so `ok` is always true;
//! `event_id` and `source` are the row's own columns; and the router's unset keys are
//! nulls. The worker stores the rest ([`compact`]: ~150 of a noop event's ~320 bytes less,
//! issue 18), and every read of the row expands it back ([`expand`]) to exactly the text
//! it stored before: keys sorted, the same bytes. A result that has `ok` — written by the
//! seed, by an earlier version or by hand — reads as it is stored.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::domain::Source;

/// The router keys a compact result leaves out when null (`RouteDecision`'s optional
/// fields); `provider`, `confidence` and `reasons` are always set.
pub const ROUTER_NULLABLE: [&str; 6] = [
    "ai_detection",
    "event_type",
    "handler_mode",
    "handler_target",
    "mapped_action",
    "matched_rule",
];

/// The compact result, fields in sorted order as [`expand`] writes them back.
#[derive(serde::Serialize)]
struct Compact<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    idempotent_replay: bool,
    result: &'a Value,
    router: Router<'a>,
}

/// A router object without its null [`ROUTER_NULLABLE`] keys.
struct Router<'a>(&'a Value);

impl Serialize for Router<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Value::Object(map) = self.0 else {
            return self.0.serialize(s);
        };
        let kept = map
            .iter()
            .filter(|(k, v)| !(v.is_null() && ROUTER_NULLABLE.contains(&k.as_str())));
        let mut out = s.serialize_map(None)?;
        for (k, v) in kept {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

/// The `result_json` a `done` attempt stores: its handler's `result`, the `router`
/// decision (as serialised for the handler) and whether the output was replayed.
pub fn compact(router: &Value, result: &Value, idempotent_replay: bool) -> String {
    let stored = Compact {
        idempotent_replay,
        result,
        router: Router(router),
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// The contract's result of a row whose `result_json` is `stored`: a compact result gets
/// back `ok`, `event_id`, `source` and the router's nulls; anything else reads as stored.
pub fn expand(stored: &str, source: Option<Source>, event_id: Option<&str>) -> String {
    // Cheap test first: every compact result starts with one of its own keys.
    let maybe_compact = stored.starts_with(r#"{"result":"#) || stored.starts_with(r#"{"idempotent_replay":"#);
    if !maybe_compact {
        return stored.to_string();
    }
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(stored) else {
        return stored.to_string();
    };
    if map.contains_key("ok") {
        return stored.to_string();
    }
    map.insert("ok".into(), Value::Bool(true));
    // The worker wrote the claim's event id, which is "" for a row without one.
    map.insert("event_id".into(), Value::String(event_id.unwrap_or_default().into()));
    map.insert(
        "source".into(),
        source.map_or(Value::Null, |s| Value::String(s.as_str().into())),
    );
    if let Some(Value::Object(router)) = map.get_mut("router") {
        restore_nulls(router);
    }
    serde_json::to_string(&map).unwrap_or_else(|_| stored.to_string())
}

fn restore_nulls(router: &mut Map<String, Value>) {
    for key in ROUTER_NULLABLE {
        router.entry(key).or_insert(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::handlers::HandlerMode;
    use crate::routing::RouteDecision;

    /// What the worker stored before results were compact (the contract's shape, every key
    /// sorted): the text `expand` must give back, byte for byte.
    fn full(source: Source, event_id: &str, router: &Value, result: &Value, replay: bool) -> String {
        let mut v = json!({"event_id": event_id, "ok": true, "result": result, "router": router,
                           "source": source.as_str()});
        if replay {
            v["idempotent_replay"] = Value::Bool(true);
        }
        v.to_string()
    }

    fn decisions() -> Vec<RouteDecision> {
        let bare = RouteDecision {
            provider: "unknown".into(),
            confidence: 0.2,
            event_type: None,
            matched_rule: None,
            mapped_action: None,
            handler_mode: None,
            handler_target: None,
            reasons: vec![],
            ai_detection: None,
            actions: vec![],
            flow: None,
        };
        let routed = RouteDecision {
            provider: "github".into(),
            confidence: 0.98,
            event_type: Some("push \"quoted\" é".into()),
            matched_rule: Some("push".into()),
            mapped_action: Some("handle_github_push".into()),
            handler_mode: Some(HandlerMode::Command),
            handler_target: Some("deploy".into()),
            reasons: vec!["header:x-github-event".into(), "rule:push".into()],
            ai_detection: Some(json!({"provider": "github", "confidence": 0.7, "z": [1, -0.0, 1e300]})),
            actions: vec![],
            flow: None,
        };
        let partly = RouteDecision {
            mapped_action: Some("bench_noop".into()),
            handler_mode: Some(HandlerMode::Noop),
            reasons: vec!["mapping:unknown".into()],
            ..bare.clone()
        };
        vec![bare, routed, partly]
    }

    #[test]
    fn a_compact_result_expands_to_the_full_text_byte_for_byte() {
        let results = [
            json!({"mode": "noop", "action": "bench_noop"}),
            json!({"note": "no mapping"}),
            json!({"stdout": "line\n\u{1}", "code": 0, "big": u64::MAX, "neg": i64::MIN, "f": 0.1}),
            Value::Null,
        ];
        for decision in decisions() {
            let router = serde_json::to_value(&decision).unwrap();
            for result in &results {
                for replay in [false, true] {
                    for (source, id) in [(Source::Webhook, "sha256:ab"), (Source::Cron, "cron:job:1")] {
                        let stored = compact(&router, result, replay);
                        let want = full(source, id, &router, result, replay);
                        assert_eq!(expand(&stored, Some(source), Some(id)), want);
                        assert!(stored.len() < want.len(), "{stored} is not shorter than {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_compact_result_leaves_out_only_what_the_row_holds() {
        let router = serde_json::to_value(&decisions()[2]).unwrap();
        let stored = compact(&router, &json!({"mode": "noop"}), false);
        assert_eq!(
            stored,
            r#"{"result":{"mode":"noop"},"router":{"confidence":0.2,"handler_mode":"noop","mapped_action":"bench_noop","provider":"unknown","reasons":["mapping:unknown"]}}"#
        );
    }

    #[test]
    fn results_that_are_not_compact_read_as_stored() {
        let seed =
            r#"{"ok": true, "source": "webhook", "event_id": "x", "router": {"provider": "github"}, "result": {}}"#;
        // Any result with `ok`, even one starting like a compact one, is the full form.
        let with_ok = r#"{"result":{},"ok":true,"router":{}}"#;
        for stored in [seed, with_ok, "not json", "[1,2]", r#"{"result":"#, ""] {
            assert_eq!(expand(stored, Some(Source::Webhook), Some("x")), stored);
        }
    }

    #[test]
    fn a_row_without_an_event_id_or_source_expands_as_the_worker_wrote_it() {
        let stored = compact(
            &json!({"provider": "p", "confidence": 1.0, "reasons": []}),
            &json!(1),
            false,
        );
        let v: Value = serde_json::from_str(&expand(&stored, None, None)).unwrap();
        assert_eq!(v["event_id"], "");
        assert_eq!(v["source"], Value::Null);
        assert_eq!(v["router"]["matched_rule"], Value::Null);
    }
}
