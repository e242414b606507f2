//! "Try it": how the routing core would decide for a payload, rule by rule, without
//! running anything (no handler, no AI classifier, nothing stored).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::ingest::envelope::{RequestParts, build};
use crate::routing::{CompiledRule, Mapping, RouteDecision, Rule, decide, detect_payload};
use crate::store::RoutingTables;

/// How one rule of the detected provider fared.
pub enum Outcome {
    /// Disabled rules are skipped.
    Disabled,
    /// Its stored conditions do not parse (the worker skips it too).
    Invalid(String),
    /// Its conditions did not hold.
    NoMatch,
    /// Its conditions held, with these signals.
    Match(Vec<String>),
}

/// One rule of the detected provider and how it fared.
pub struct RuleCheck {
    /// The rule, as stored.
    pub rule: Rule,
    /// What evaluating it gave.
    pub outcome: Outcome,
}

/// The outcome of a trial.
pub struct Trial {
    /// What the worker would decide (the same `decide` it calls).
    pub decision: RouteDecision,
    /// The detected provider's rules in evaluation order, each evaluated.
    pub checks: Vec<RuleCheck>,
    /// The provider's mapping, if any.
    pub mapping: Option<Mapping>,
}

/// Routes a stored payload envelope against `tables`.
pub fn trial(payload: &Value, tables: &RoutingTables) -> Trial {
    let detection = detect_payload(payload);
    let provider = detection.provider.clone();
    let mut rules: Vec<Rule> = tables
        .rules
        .iter()
        .filter(|r| r.provider.eq_ignore_ascii_case(&provider))
        .cloned()
        .collect();
    rules.sort_by_key(|r| (r.priority, r.id));
    let mapping = tables
        .mappings
        .iter()
        .find(|m| m.provider.eq_ignore_ascii_case(&provider))
        .cloned();
    // The worker's path: the rules that compile, then `decide`.
    let compiled: Vec<CompiledRule> = rules
        .iter()
        .filter_map(|r| CompiledRule::compile(r.clone()).ok())
        .collect();
    let decision = decide(payload, detection, &compiled, mapping.as_ref());
    let checks = rules
        .into_iter()
        .map(|rule| {
            let outcome = match CompiledRule::compile(rule.clone()) {
                _ if !rule.enabled => Outcome::Disabled,
                Err(e) => Outcome::Invalid(e.to_string()),
                Ok(c) => c.conditions.evaluate(payload).map_or(Outcome::NoMatch, Outcome::Match),
            };
            RuleCheck { rule, outcome }
        })
        .collect();
    Trial {
        decision,
        checks,
        mapping,
    }
}

/// Builds the envelope a webhook with these headers and body would be stored as.
///
/// `headers` holds one `Name: value` per line; a malformed line is an error naming it.
pub fn envelope_for(hint: Option<&str>, headers: &str, body: &str) -> Result<Value, String> {
    let mut map = HeaderMap::new();
    for (n, line) in headers.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || format!("header line {} is not 'Name: value': {line}", n + 1);
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        map.append(name, value);
    }
    if !map.contains_key("content-type") {
        map.insert("content-type", HeaderValue::from_static("application/json"));
    }
    let hint = hint.map(str::trim).filter(|h| !h.is_empty());
    let path = hint.map_or_else(|| "/webhook".to_owned(), |h| format!("/webhook/{h}"));
    let envelope = build(&RequestParts {
        hint,
        method: "POST",
        path: &path,
        query: None,
        headers: &map,
        body: body.as_bytes(),
        // As stored by default: rules see redacted credentials, as they would in the worker.
        store_sensitive_headers: false,
    })
    .map_err(|e| e.to_string())?;
    let mut payload: Value =
        serde_json::from_str(&envelope.payload_json).map_err(|e| format!("could not build the envelope: {e}"))?;
    // What the worker routes on: the envelope with every field (store::stored_payload).
    crate::store::stored_payload::expand_value(&mut payload, crate::domain::Source::Webhook);
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::HandlerMode;
    use serde_json::json;

    fn rule(id: i64, name: &str, priority: i64, cond: Value, enabled: bool) -> Rule {
        Rule {
            id,
            provider: "github".into(),
            name: name.into(),
            priority,
            conditions_json: cond.to_string(),
            action: format!("do_{name}"),
            handler_mode: HandlerMode::Noop,
            handler_target: None,
            enabled,
            continue_after_match: false,
            flow: None,
        }
    }

    #[test]
    fn every_rule_of_the_provider_is_evaluated_in_order() {
        let push = json!({"op": "header_equals", "name": "x-github-event", "value": "push"});
        let tables = RoutingTables {
            rules: vec![
                rule(3, "late_push", 50, push.clone(), true),
                rule(
                    1,
                    "issues",
                    10,
                    json!({"op": "header_equals", "name": "x-github-event", "value": "issues"}),
                    true,
                ),
                rule(2, "off", 1, push.clone(), false),
                rule(4, "push", 20, push, true),
                rule(5, "broken", 30, json!({"op": "nope"}), true),
            ],
            mappings: vec![],
        };
        let payload = envelope_for(None, "X-GitHub-Event: push\n\n", r#"{"ref":"main"}"#).expect("envelope");
        let t = trial(&payload, &tables);
        assert_eq!(t.decision.provider, "github");
        assert_eq!(t.decision.matched_rule.as_deref(), Some("push"));
        let order: Vec<_> = t
            .checks
            .iter()
            .map(|c| {
                let o = match &c.outcome {
                    Outcome::Disabled => "disabled",
                    Outcome::Invalid(_) => "invalid",
                    Outcome::NoMatch => "no",
                    Outcome::Match(_) => "yes",
                };
                (c.rule.name.as_str(), o)
            })
            .collect();
        assert_eq!(
            order,
            [
                ("off", "disabled"),
                ("issues", "no"),
                ("push", "yes"),
                ("broken", "invalid"),
                ("late_push", "yes")
            ]
        );
    }

    #[test]
    fn hint_and_bad_header_lines() {
        let p = envelope_for(Some("stripe"), "", "{}").expect("envelope");
        assert_eq!(p["source_hint"], "stripe");
        assert_eq!(p["path"], "/webhook/stripe");
        let e = envelope_for(None, "no colon here", "{}").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
