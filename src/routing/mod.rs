//! Routing (CONTRACT §4): detect the provider, then pick the action from the provider's
//! rules or its mapping. Pure: the caller loads rules and mappings and applies the hint.

pub mod ai;
pub mod cache;
pub mod detect;
pub mod rules;

pub use detect::{Detection, apply_hint, apply_verified_source, detect};
pub use rules::{Condition, RuleError};

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::domain::flow::Flow;

pub use crate::domain::{HandlerMode, Mapping, Rule};

/// A stored rule with its conditions compiled, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The rule as stored.
    pub rule: Rule,
    /// Its conditions, parsed from `rule.conditions_json`.
    pub conditions: Condition,
}

impl CompiledRule {
    /// Parses the rule's stored conditions; the error says where they are wrong.
    pub fn compile(rule: Rule) -> Result<CompiledRule, RuleError> {
        let conditions = Condition::parse_str(&rule.conditions_json)?;
        Ok(CompiledRule { rule, conditions })
    }
}

/// What the router decided, serialised exactly as the contract's `router` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// Detected provider.
    pub provider: String,
    /// Detection confidence.
    pub confidence: f64,
    /// Event type, when the AI classifier supplied one.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Name of the rule that matched.
    #[serde(default)]
    pub matched_rule: Option<String>,
    /// Chosen action; `None` means no route.
    #[serde(default)]
    pub mapped_action: Option<String>,
    /// Chosen handler mode.
    #[serde(default)]
    pub handler_mode: Option<HandlerMode>,
    /// Chosen handler target.
    #[serde(default)]
    pub handler_target: Option<String>,
    /// Detection signals, then `rule:<name>` and the rule's signals, or `mapping:<provider>`.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The AI classifier's raw answer, when it ran.
    #[serde(default)]
    pub ai_detection: Option<serde_json::Value>,
    /// Every action to run, in priority order, when rules with `continue` chose more than
    /// one (fan-out, CONTRACT §12); empty otherwise, and then not serialised, so a
    /// one-action router reads exactly as before. The single-action fields above are the
    /// first action's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<RoutedAction>,
    /// The first action's flow control (CONTRACT §13); not part of the stored router.
    #[serde(skip)]
    pub flow: Option<Arc<Flow>>,
}

/// One action of a fan-out decision, as listed in `router.actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutedAction {
    /// The action name (each name at most once per decision).
    pub action: String,
    /// Its handler mode.
    pub handler_mode: HandlerMode,
    /// Its handler target.
    #[serde(default)]
    pub handler_target: Option<String>,
    /// The rule that chose it.
    #[serde(default)]
    pub matched_rule: Option<String>,
    /// Its flow control (CONTRACT §13); not part of the stored router.
    #[serde(skip)]
    pub flow: Option<Arc<Flow>>,
}

impl RoutedAction {
    fn of(rule: &Rule) -> RoutedAction {
        RoutedAction {
            action: rule.action.clone(),
            handler_mode: rule.handler_mode,
            handler_target: rule.handler_target.clone(),
            matched_rule: Some(rule.name.clone()),
            flow: rule.flow.clone().map(Arc::new),
        }
    }
}

/// Detects the provider of a stored payload envelope (headers, JSON body, path hint).
pub fn detect_payload(payload: &serde_json::Value) -> Detection {
    let empty = serde_json::Map::new();
    let headers = payload
        .get("headers")
        .and_then(serde_json::Value::as_object)
        .unwrap_or(&empty);
    let json = payload.get("json").filter(|j| j.is_object());
    let mut detection = detect(headers, json);
    apply_hint(
        &mut detection,
        payload.get("source_hint").and_then(serde_json::Value::as_str),
    );
    apply_verified_source(&mut detection, payload.get("verified_source"));
    detection
}

/// Chooses the action: rules of the provider (enabled only, sorted by priority then id, first match: reasons get `"rule:<name>"` then the rule's signals), else the enabled mapping (reason `"mapping:<provider>"`), else no route (mapped_action None).
///
/// A matching rule with `continue` lets evaluation go on: every later matching rule adds
/// its action (and its reasons) up to and including the first one without `continue`
/// ([`RouteDecision::actions`]). Without one, evaluation stops at the first match as before.
///
/// `rules` may hold any providers in any order. A `mapping` for another provider than the
/// detected one is ignored, like another provider's rules.
pub fn decide(
    payload: &serde_json::Value,
    detection: Detection,
    rules: &[CompiledRule],
    mapping: Option<&Mapping>,
) -> RouteDecision {
    let Detection {
        provider,
        confidence,
        mut reasons,
    } = detection;
    let mut decision = RouteDecision {
        provider,
        confidence,
        event_type: None,
        matched_rule: None,
        mapped_action: None,
        handler_mode: None,
        handler_target: None,
        reasons: Vec::new(),
        ai_detection: None,
        actions: Vec::new(),
        flow: None,
    };

    let mut candidates: Vec<&CompiledRule> = rules
        .iter()
        .filter(|r| r.rule.enabled && r.rule.provider.eq_ignore_ascii_case(&decision.provider))
        .collect();
    // Stable sort: already-ordered input (the store's usual order) costs one pass.
    candidates.sort_by_key(|r| (r.rule.priority, r.rule.id));

    // Lazy: rules after the deciding match are never evaluated.
    let mut hits = candidates
        .into_iter()
        .filter_map(|r| r.conditions.evaluate(payload).map(|signals| (&r.rule, signals)));
    if let Some((rule, signals)) = hits.next() {
        reasons.reserve(1 + signals.len());
        reasons.push(format!("rule:{}", rule.name));
        reasons.extend(signals);
        decision.matched_rule = Some(rule.name.clone());
        decision.mapped_action = Some(rule.action.clone());
        decision.handler_mode = Some(rule.handler_mode);
        decision.handler_target = rule.handler_target.clone();
        decision.flow = rule.flow.clone().map(Arc::new);
        if rule.continue_after_match {
            decision.actions = fan_out(rule, hits, &mut reasons);
        }
    } else if let Some(m) = mapping.filter(|m| m.enabled && m.provider.eq_ignore_ascii_case(&decision.provider)) {
        reasons.push(format!("mapping:{}", m.provider));
        decision.mapped_action = Some(m.action.clone());
        decision.handler_mode = Some(m.handler_mode);
        decision.handler_target = m.handler_target.clone();
        decision.flow = m.flow.clone().map(Arc::new);
    }
    decision.reasons = reasons;
    decision
}

/// The actions of a decision whose first matching rule, `first`, has `continue`: it and
/// every later match up to and including the first without `continue`, each action name
/// once. Empty when that makes one action (the decision's single-action fields say it all).
fn fan_out<'a>(
    first: &Rule,
    hits: impl Iterator<Item = (&'a Rule, Vec<String>)>,
    reasons: &mut Vec<String>,
) -> Vec<RoutedAction> {
    let mut actions = vec![RoutedAction::of(first)];
    for (rule, signals) in hits {
        reasons.push(format!("rule:{}", rule.name));
        reasons.extend(signals);
        if !actions.iter().any(|a| a.action == rule.action) {
            actions.push(RoutedAction::of(rule));
        }
        if !rule.continue_after_match {
            break;
        }
    }
    if actions.len() < 2 {
        actions.clear();
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn github_push() -> Value {
        json!({
            "source_hint": null, "method": "POST", "path": "/webhook", "query": {},
            "content_type": "application/json",
            "headers": {"x-github-event": "push", "x-github-delivery": "d-1", "x-hub-signature": "sha1=0"},
            "json": {"ref": "refs/heads/main", "action": "opened"}
        })
    }

    fn rule(id: i64, provider: &str, name: &str, priority: i64, cond: Value, action: &str) -> CompiledRule {
        CompiledRule::compile(Rule {
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
        })
        .expect("test condition")
    }

    fn push_rule() -> CompiledRule {
        rule(
            1,
            "github",
            "push",
            10,
            json!({"all": [{"op": "header_equals", "name": "x-github-event", "value": "push"}]}),
            "handle_github_push",
        )
    }

    fn mapping(provider: &str, action: &str) -> Mapping {
        Mapping {
            provider: provider.into(),
            action: action.into(),
            handler_mode: HandlerMode::Agent,
            handler_target: Some("echo".into()),
            enabled: true,
            flow: None,
        }
    }

    #[test]
    fn contract_example_exactly() {
        let p = github_push();
        let d = decide(&p, detect_payload(&p), &[push_rule()], None);
        let got = serde_json::to_string(&d).expect("serialise");
        assert_eq!(
            got,
            r#"{"provider":"github","confidence":0.98,"event_type":null,"matched_rule":"push","mapped_action":"handle_github_push","handler_mode":"noop","handler_target":null,"reasons":["header:x-github-event","rule:push","header_equals:x-github-event"],"ai_detection":null}"#
        );
        let back: RouteDecision = serde_json::from_str(&got).expect("round trip");
        assert_eq!(back, d);
    }

    #[test]
    fn priority_then_id_order_whatever_the_input_order() {
        let any = json!({"op": "header_present", "name": "x-github-event"});
        let rules = [
            rule(5, "github", "late", 20, any.clone(), "late"),
            rule(9, "github", "tie_high_id", 10, any.clone(), "tie_high_id"),
            rule(3, "github", "tie_low_id", 10, any.clone(), "tie_low_id"),
            rule(
                1,
                "github",
                "no_match",
                1,
                json!({"op": "header_present", "name": "x-none"}),
                "x",
            ),
        ];
        let p = github_push();
        let d = decide(&p, detect_payload(&p), &rules, None);
        assert_eq!(d.matched_rule.as_deref(), Some("tie_low_id"));
        assert_eq!(
            d.reasons,
            [
                "header:x-github-event",
                "rule:tie_low_id",
                "header_present:x-github-event"
            ]
        );
    }

    #[test]
    fn other_providers_and_disabled_rules_are_ignored() {
        let any = json!({"all": []});
        let mut disabled = rule(1, "github", "disabled", 1, any.clone(), "disabled");
        disabled.rule.enabled = false;
        let rules = [
            rule(2, "stripe", "stripe_rule", 1, any.clone(), "stripe"),
            disabled,
            rule(3, "github", "enabled", 50, any, "enabled"),
        ];
        let p = github_push();
        let d = decide(&p, detect_payload(&p), &rules, None);
        assert_eq!(d.matched_rule.as_deref(), Some("enabled"));
        assert_eq!(d.mapped_action.as_deref(), Some("enabled"));
    }

    #[test]
    fn rule_beats_mapping() {
        let p = github_push();
        let m = mapping("github", "generic");
        let d = decide(&p, detect_payload(&p), &[push_rule()], Some(&m));
        assert_eq!(d.mapped_action.as_deref(), Some("handle_github_push"));
        assert!(!d.reasons.iter().any(|r| r.starts_with("mapping:")));
    }

    #[test]
    fn mapping_when_no_rule_matches() {
        let p = json!({"headers": {"x-github-event": "issues"}, "json": {}});
        let m = mapping("github", "generic");
        let d = decide(&p, detect_payload(&p), &[push_rule()], Some(&m));
        assert_eq!(d.matched_rule, None);
        assert_eq!(d.mapped_action.as_deref(), Some("generic"));
        assert_eq!(d.handler_mode, Some(HandlerMode::Agent));
        assert_eq!(d.handler_target.as_deref(), Some("echo"));
        assert_eq!(d.reasons, ["header:x-github-event", "mapping:github"]);
    }

    #[test]
    fn unknown_provider_uses_unknown_mapping() {
        let p = json!({"headers": {}, "json": {"hello": "world"}});
        let m = mapping("unknown", "echo_action");
        let d = decide(&p, detect_payload(&p), &[], Some(&m));
        assert_eq!(d.provider, "unknown");
        assert_eq!(d.confidence, 0.2);
        assert_eq!(d.mapped_action.as_deref(), Some("echo_action"));
        assert_eq!(d.reasons, ["mapping:unknown"]);
    }

    #[test]
    fn disabled_or_foreign_mapping_means_no_route() {
        let p = json!({"headers": {"x-github-event": "issues"}, "json": {}});
        let mut m = mapping("github", "generic");
        m.enabled = false;
        let d = decide(&p, detect_payload(&p), &[push_rule()], Some(&m));
        assert_eq!(d.mapped_action, None);
        assert_eq!(d.handler_mode, None);
        assert_eq!(d.matched_rule, None);
        assert_eq!(d.reasons, ["header:x-github-event"]);
        let d = decide(&p, detect_payload(&p), &[], Some(&mapping("stripe", "s")));
        assert_eq!(d.mapped_action, None);
    }

    #[test]
    fn hint_routes_to_the_hinted_providers_rules() {
        let p = json!({"source_hint": "Fireflies", "headers": {}, "json": {"meeting": 1}});
        let r = rule(
            1,
            "fireflies",
            "meet",
            1,
            json!({"op": "json_path_exists", "path": "meeting"}),
            "summarise",
        );
        let d = decide(&p, detect_payload(&p), &[r], None);
        assert_eq!(d.provider, "fireflies");
        assert_eq!(d.confidence, 0.6);
        assert_eq!(d.reasons, ["path:source_hint", "rule:meet", "json_path_exists:meeting"]);
    }

    fn continuing(mut r: CompiledRule) -> CompiledRule {
        r.rule.continue_after_match = true;
        r
    }

    #[test]
    fn continue_adds_every_match_up_to_the_first_without_it() {
        let any = json!({"op": "header_present", "name": "x-github-event"});
        let none = json!({"op": "header_present", "name": "x-none"});
        let rules = [
            continuing(rule(1, "github", "review", 10, any.clone(), "review")),
            continuing(rule(2, "github", "skipped", 15, none, "never")),
            continuing(rule(3, "github", "slack", 20, any.clone(), "post_slack")),
            rule(4, "github", "ledger", 30, any.clone(), "ledger"),
            rule(5, "github", "after_stop", 40, any, "after_stop"),
        ];
        let p = github_push();
        let d = decide(&p, detect_payload(&p), &rules, Some(&mapping("github", "generic")));
        let names: Vec<&str> = d.actions.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(names, ["review", "post_slack", "ledger"]);
        assert_eq!(d.actions[1].matched_rule.as_deref(), Some("slack"));
        // The single-action fields are the first action's.
        assert_eq!(d.mapped_action.as_deref(), Some("review"));
        assert_eq!(d.matched_rule.as_deref(), Some("review"));
        assert!(d.reasons.contains(&"rule:ledger".to_string()));
        assert!(
            !d.reasons
                .iter()
                .any(|r| r == "rule:after_stop" || r.starts_with("mapping:"))
        );
        let v = serde_json::to_value(&d).expect("serialise");
        assert_eq!(
            v["actions"][2],
            json!({"action": "ledger", "handler_mode": "noop",
                                          "handler_target": null, "matched_rule": "ledger"})
        );
    }

    #[test]
    fn a_repeated_action_counts_once_and_one_action_reads_as_before() {
        let any = json!({"op": "header_present", "name": "x-github-event"});
        let p = github_push();
        let twice = [
            continuing(rule(1, "github", "a", 10, any.clone(), "same")),
            rule(2, "github", "b", 20, any.clone(), "same"),
        ];
        let d = decide(&p, detect_payload(&p), &twice, None);
        assert!(d.actions.is_empty());
        assert_eq!(d.mapped_action.as_deref(), Some("same"));
        // A `continue` rule that matches alone: the decision is a plain one-action one.
        let alone = [continuing(push_rule())];
        let d = decide(&p, detect_payload(&p), &alone, None);
        let plain = decide(&p, detect_payload(&p), &[push_rule()], None);
        assert_eq!(
            serde_json::to_string(&d).expect("serialise"),
            serde_json::to_string(&plain).expect("serialise")
        );
    }

    #[test]
    fn decision_reads_minimal_stored_router() {
        let d: RouteDecision = serde_json::from_str(r#"{"provider":"x","confidence":0.5}"#).expect("defaults");
        assert_eq!(d.mapped_action, None);
        assert!(d.reasons.is_empty());
    }
}
