//! Tests of the rule language: parsing, evaluation, signals and the limits.

use super::eval::number_eq;
use super::*;
use crate::routing::detect::tests::arb_json;
use proptest::prelude::*;
use serde_json::{Map, Number, json};

fn payload() -> Value {
    json!({
        "source_hint": "github",
        "headers": {"x-github-event": "push", "content-type": "application/json", "x-num": "7"},
        "json": {
            "action": "opened",
            "count": 7,
            "ratio": 0.5,
            "ref": "refs/heads/main",
            "draft": false,
            "nothing": null,
            "labels": [{"name": "bug"}, {"name": "p1"}],
            "matrix": [[1, 2], [3, 4]],
            "0": {"x": "key-zero"},
            "pull_request": {"title": "Fix: crash on start", "user": {"login": "octocat"}}
        }
    })
}

fn eval(cond: Value) -> Option<Vec<String>> {
    let c = Condition::parse(&cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
    let got = c.evaluate(&payload());
    assert_eq!(got.is_some(), c.matches(&payload()), "matches() agrees with evaluate()");
    got
}

fn err(cond: Value) -> String {
    match Condition::parse(&cond) {
        Ok(c) => panic!("{cond} parsed as {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn sig(s: &[&str]) -> Option<Vec<String>> {
    Some(s.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn header_present() {
    assert_eq!(
        eval(json!({"op": "header_present", "name": "X-GitHub-Event"})),
        sig(&["header_present:x-github-event"])
    );
    assert_eq!(eval(json!({"op": "header_present", "name": "x-missing"})), None);
}

#[test]
fn header_equals() {
    assert_eq!(
        eval(json!({"op": "header_equals", "name": "x-github-event", "value": "push"})),
        sig(&["header_equals:x-github-event"])
    );
    assert_eq!(
        eval(json!({"op": "header_equals", "name": "x-github-event", "value": "Push"})),
        None
    );
    assert_eq!(
        eval(json!({"op": "header_equals", "name": "x-nope", "value": "push"})),
        None
    );
}

#[test]
fn header_ops_without_headers_do_not_match() {
    let c = Condition::parse(&json!({"op": "header_present", "name": "a"})).unwrap();
    assert_eq!(c.evaluate(&json!({"json": {}})), None);
    assert_eq!(c.evaluate(&json!({"headers": "a"})), None);
    assert_eq!(c.evaluate(&json!(null)), None);
}

#[test]
fn json_path_exists() {
    assert_eq!(
        eval(json!({"op": "json_path_exists", "path": "pull_request.user.login"})),
        sig(&["json_path_exists:pull_request.user.login"])
    );
    // A present null exists; a missing key does not.
    assert!(eval(json!({"op": "json_path_exists", "path": "nothing"})).is_some());
    assert_eq!(
        eval(json!({"op": "json_path_exists", "path": "pull_request.body"})),
        None
    );
    // Walking through a scalar fails rather than panicking.
    assert_eq!(eval(json!({"op": "json_path_exists", "path": "action.x"})), None);
}

#[test]
fn json_path_equals_is_typed() {
    assert_eq!(
        eval(json!({"op": "json_path_equals", "path": "action", "value": "opened"})),
        sig(&["json_path_equals:action"])
    );
    assert!(eval(json!({"op": "json_path_equals", "path": "count", "value": 7})).is_some());
    assert_eq!(
        eval(json!({"op": "json_path_equals", "path": "count", "value": "7"})),
        None
    );
    // A JSON number is a number: 7 and 7.0 are equal.
    assert!(eval(json!({"op": "json_path_equals", "path": "count", "value": 7.0})).is_some());
    assert_eq!(
        eval(json!({"op": "json_path_equals", "path": "ratio", "value": 0.25})),
        None
    );
    assert!(eval(json!({"op": "json_path_equals", "path": "draft", "value": false})).is_some());
    assert_eq!(
        eval(json!({"op": "json_path_equals", "path": "draft", "value": null})),
        None
    );
    assert!(eval(json!({"op": "json_path_equals", "path": "nothing", "value": null})).is_some());
    // Missing is not null.
    assert_eq!(
        eval(json!({"op": "json_path_equals", "path": "absent", "value": null})),
        None
    );
    // Structured values compare deeply.
    assert!(eval(json!({"op": "json_path_equals", "path": "matrix", "value": [[1, 2], [3, 4.0]]})).is_some());
    assert!(eval(json!({"op": "json_path_equals", "path": "labels.0", "value": {"name": "bug"}})).is_some());
    assert_eq!(
        eval(json!({"op": "json_path_equals", "path": "labels.0", "value": {"name": "bug", "x": 1}})),
        None
    );
}

#[test]
fn number_equality_edges() {
    assert!(number_eq(&Number::from(u64::MAX), &Number::from(u64::MAX)));
    assert!(!number_eq(&Number::from(-1i64), &Number::from(u64::MAX)));
    assert!(number_eq(&Number::from(-3i64), &Number::from(-3i64)));
    assert!(!number_eq(&Number::from(3u64), &Number::from(4u64)));
}

#[test]
fn json_path_regex() {
    assert_eq!(
        eval(json!({"op": "json_path_regex", "path": "ref", "pattern": "^refs/heads/(main|master)$"})),
        sig(&["json_path_regex:ref"])
    );
    // Unanchored search, like Python's re.search.
    assert!(eval(json!({"op": "json_path_regex", "path": "pull_request.title", "pattern": "(?i)crash"})).is_some());
    assert_eq!(
        eval(json!({"op": "json_path_regex", "path": "ref", "pattern": "^main"})),
        None
    );
    // Only strings are searched: 7 is not "7".
    assert_eq!(
        eval(json!({"op": "json_path_regex", "path": "count", "pattern": "7"})),
        None
    );
    assert_eq!(
        eval(json!({"op": "json_path_regex", "path": "absent", "pattern": ".*"})),
        None
    );
}

#[test]
fn array_index_paths() {
    assert!(eval(json!({"op": "json_path_equals", "path": "labels.1.name", "value": "p1"})).is_some());
    assert!(eval(json!({"op": "json_path_equals", "path": "matrix.1.0", "value": 3})).is_some());
    assert_eq!(eval(json!({"op": "json_path_exists", "path": "labels.2"})), None);
    assert_eq!(eval(json!({"op": "json_path_exists", "path": "labels.name"})), None);
    assert_eq!(eval(json!({"op": "json_path_exists", "path": "labels.-1"})), None);
    assert_eq!(
        eval(json!({"op": "json_path_exists", "path": "labels.99999999999999999999999"})),
        None
    );
    // On an object, a numeric part is a key.
    assert!(eval(json!({"op": "json_path_equals", "path": "0.x", "value": "key-zero"})).is_some());
}

#[test]
fn all_collects_every_signal() {
    let c = json!({"all": [
        {"op": "header_equals", "name": "x-github-event", "value": "push"},
        {"op": "json_path_equals", "path": "action", "value": "opened"},
    ]});
    assert_eq!(
        eval(c),
        sig(&["header_equals:x-github-event", "json_path_equals:action"])
    );
    let c = json!({"all": [
        {"op": "header_equals", "name": "x-github-event", "value": "push"},
        {"op": "json_path_equals", "path": "action", "value": "closed"},
    ]});
    assert_eq!(eval(c), None);
    // Empty all is a catch-all.
    assert_eq!(eval(json!({"all": []})), sig(&[]));
}

#[test]
fn any_reports_first_matching_child() {
    let c = json!({"any": [
        {"op": "json_path_equals", "path": "action", "value": "closed"},
        {"op": "header_present", "name": "x-github-event"},
        {"op": "json_path_exists", "path": "action"},
    ]});
    assert_eq!(eval(c), sig(&["header_present:x-github-event"]));
    assert_eq!(eval(json!({"any": [{"op": "header_present", "name": "nope"}]})), None);
    assert_eq!(eval(json!({"any": []})), None);
}

#[test]
fn nested_failed_branch_leaves_no_signals() {
    let c = json!({"any": [
        {"all": [
            {"op": "header_present", "name": "x-github-event"},
            {"op": "json_path_equals", "path": "action", "value": "closed"},
        ]},
        {"all": [
            {"op": "json_path_exists", "path": "ref"},
            {"any": [{"op": "json_path_regex", "path": "ref", "pattern": "main"}]},
        ]},
    ]});
    assert_eq!(eval(c), sig(&["json_path_exists:ref", "json_path_regex:ref"]));
}

#[test]
fn single_condition_form() {
    assert_eq!(
        eval(json!({"op": "json_path_exists", "path": "action", "comment": "ignored"})),
        sig(&["json_path_exists:action"])
    );
}

#[test]
fn unknown_op_is_refused_naming_it_and_where() {
    let e = err(json!({"all": [{"op": "header_present", "name": "a"}, {"op": "foo"}]}));
    assert!(e.starts_with(r#"unknown op "foo" at conditions.all[1]"#), "{e}");
    let e = err(json!({"op": "json_path_contains", "path": "a"}));
    assert!(
        e.starts_with(r#"unknown op "json_path_contains" at conditions "#),
        "{e}"
    );
}

#[test]
fn missing_fields_are_refused() {
    let e = err(json!({"any": [{"op": "header_equals", "value": "push"}]}));
    assert_eq!(e, r#"missing field "name" for header_equals at conditions.any[0]"#);
    let e = err(json!({"op": "header_equals", "name": "x"}));
    assert_eq!(e, r#"missing field "value" for header_equals at conditions"#);
    let e = err(json!({"op": "json_path_equals", "path": "a"}));
    assert_eq!(e, r#"missing field "value" for json_path_equals at conditions"#);
    let e = err(json!({"op": "json_path_regex", "path": "a"}));
    assert_eq!(e, r#"missing field "pattern" for json_path_regex at conditions"#);
    let e = err(json!({"all": [{"any": [{"op": "json_path_exists"}]}]}));
    assert_eq!(
        e,
        r#"missing field "path" for json_path_exists at conditions.all[0].any[0]"#
    );
}

#[test]
fn mistyped_and_malformed_nodes_are_refused() {
    let e = err(json!({"op": "header_equals", "name": "x", "value": 7}));
    assert_eq!(e, r#"field "value" for header_equals at conditions must be a string"#);
    let e = err(json!({"op": "header_present", "name": ""}));
    assert_eq!(
        e,
        r#"field "name" for header_present at conditions must be a non-empty string"#
    );
    let e = err(json!({"op": 3}));
    assert_eq!(e, r#""op" at conditions must be a string"#);
    let e = err(json!({"all": {"op": "header_present", "name": "a"}}));
    assert_eq!(e, r#""all" at conditions must be an array of conditions"#);
    let e = err(json!({"any": [["op"]]}));
    assert_eq!(e, "expected a condition object at conditions.any[0], found an array");
    let e = err(json!("header_present"));
    assert_eq!(e, "expected a condition object at conditions, found a string");
    let e = err(json!({"name": "x"}));
    assert!(e.starts_with(r#"missing "op" at conditions"#), "{e}");
    let e = err(json!({"all": [], "op": "header_present", "name": "a"}));
    assert_eq!(
        e,
        r#"condition at conditions must have exactly one of "op", "all", "any""#
    );
    let e = err(json!({"op": "json_path_exists", "path": "a..b"}));
    assert!(
        e.starts_with(r#"invalid path "a..b" at conditions: empty segment"#),
        "{e}"
    );
}

#[test]
fn invalid_json_is_refused_naming_the_error() {
    let e = Condition::parse_str(r#"{"op": "header_present", "name": }"#).unwrap_err();
    assert!(matches!(e, RuleError::InvalidJson(_)));
    let msg = e.to_string();
    assert!(
        msg.starts_with("invalid conditions JSON: expected value at line 1 column"),
        "{msg}"
    );
    let c = Condition::parse_str(r#"{"op": "header_present", "name": "x-github-event"}"#).unwrap();
    assert!(c.matches(&payload()));
}

#[test]
fn bad_regex_is_refused() {
    let e = err(json!({"any": [{"op": "json_path_regex", "path": "a", "pattern": "(unclosed"}]}));
    assert!(e.starts_with("invalid regex at conditions.any[0]: "), "{e}");
}

#[test]
fn oversized_regex_is_refused_at_parse() {
    // Each \w{100} expands to a large Unicode class program: far over 256 KiB compiled.
    let e = err(json!({"op": "json_path_regex", "path": "a", "pattern": r"\w{100}\w{100}\w{100}"}));
    assert!(e.starts_with("invalid regex at conditions: "), "{e}");
    assert!(e.contains("size limit"), "{e}");
    // A modest pattern of the same kind is fine.
    assert!(Condition::parse(&json!({"op": "json_path_regex", "path": "a", "pattern": r"\w{3}"})).is_ok());
}

#[test]
fn deeply_nested_regex_syntax_is_refused() {
    let pattern = format!("{}a{}", "(".repeat(100), ")".repeat(100));
    let e = err(json!({"op": "json_path_regex", "path": "a", "pattern": pattern}));
    assert!(e.starts_with("invalid regex at conditions: "), "{e}");
}

fn nested(levels: usize) -> Value {
    let mut v = json!({"op": "header_present", "name": "x-github-event"});
    for i in 0..levels {
        let key = if i % 2 == 0 { "all" } else { "any" };
        v = json!({ key: [v] });
    }
    v
}

#[test]
fn depth_limit() {
    let c = Condition::parse(&nested(MAX_DEPTH)).expect("32 levels are allowed");
    assert_eq!(c.evaluate(&payload()), sig(&["header_present:x-github-event"]));
    let e = err(nested(MAX_DEPTH + 1));
    assert!(
        e.starts_with("conditions nested deeper than 32 levels at conditions.all[0].any[0]."),
        "{e}"
    );
    // Hostile depth far beyond the limit is refused, not a stack overflow.
    let deep = "{\"all\":[".repeat(60) + &"]}".repeat(60);
    assert!(matches!(Condition::parse_str(&deep), Err(RuleError::TooDeep { .. })));
    let mut v = json!({"op": "header_present", "name": "a"});
    for _ in 0..200 {
        v = json!({ "any": [v] });
    }
    assert!(matches!(Condition::parse(&v), Err(RuleError::TooDeep { .. })));
    // Past serde_json's own recursion limit the text is refused as JSON.
    let deeper = "{\"all\":[".repeat(500) + &"]}".repeat(500);
    let e = Condition::parse_str(&deeper).unwrap_err().to_string();
    assert!(
        e.starts_with("invalid conditions JSON: recursion limit exceeded"),
        "{e}"
    );
}

/// Conditions that are often valid: known ops with plausible (sometimes wrong) fields.
fn arb_condition() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        prop::sample::select(vec!["x-github-event", "X-Github-Event", "content-type", "x-a"]).prop_map(Value::from),
        arb_json(),
    ];
    let path = prop_oneof![
        prop::sample::select(vec!["action", "a.0", "a.b", "0", "labels.1.name", "a..b", ""]).prop_map(Value::from),
        "[a-z0-9.]{0,8}".prop_map(Value::from),
        arb_json(),
    ];
    let pattern = prop_oneof![
        prop::sample::select(vec!["^a", "(?i)PUSH", "[", r"\d+", "x{2,}"]).prop_map(Value::from),
        ".{0,10}".prop_map(Value::from),
    ];
    let leaf = (
        prop::sample::select(OPS.iter().copied().chain(["nope"]).collect::<Vec<_>>()),
        proptest::option::of(name),
        proptest::option::of(path),
        proptest::option::of(arb_json()),
        proptest::option::of(pattern),
    )
        .prop_map(|(op, name, path, value, pattern)| {
            let mut m = Map::new();
            m.insert("op".into(), op.into());
            for (k, v) in [("name", name), ("path", path), ("value", value), ("pattern", pattern)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        });
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"all": v})),
            prop::collection::vec(inner, 0..4).prop_map(|v| json!({"any": v})),
        ]
    })
}

fn arb_payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_json(),
        (crate::routing::detect::tests::arb_headers(), arb_json()).prop_map(|(h, j)| json!({"headers": h, "json": j})),
        arb_json().prop_map(|j| {
            let mut p = payload();
            p["json"]["a"] = j;
            p
        }),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = Condition::parse(&v);
        let _ = Condition::parse_str(&v.to_string());
    }

    #[test]
    fn parse_str_never_panics_on_arbitrary_text(s in ".{0,40}") {
        let _ = Condition::parse_str(&s);
    }

    #[test]
    fn evaluate_never_panics_and_agrees_with_wrappers(c in arb_condition(), p in arb_payload()) {
        if let Ok(cond) = Condition::parse(&c) {
            let got = cond.evaluate(&p);
            prop_assert_eq!(got.is_some(), cond.matches(&p));
            // all[c] and any[c] behave exactly like c, signals included.
            let all = Condition::parse(&json!({"all": [c.clone()]})).expect("wrapping a valid condition");
            prop_assert_eq!(&all.evaluate(&p), &got);
            let any = Condition::parse(&json!({"any": [c.clone()]})).expect("wrapping a valid condition");
            prop_assert_eq!(&any.evaluate(&p), &got);
        }
    }

    #[test]
    fn any_is_or_and_all_is_and(a in arb_condition(), b in arb_condition(), p in arb_payload()) {
        if let (Ok(ca), Ok(cb)) = (Condition::parse(&a), Condition::parse(&b)) {
            let (ma, mb) = (ca.matches(&p), cb.matches(&p));
            let any = Condition::parse(&json!({"any": [a.clone(), b.clone()]})).expect("valid");
            let all = Condition::parse(&json!({"all": [a, b]})).expect("valid");
            prop_assert_eq!(any.matches(&p), ma || mb);
            prop_assert_eq!(all.matches(&p), ma && mb);
            if let (Some(sa), Some(sb)) = (ca.evaluate(&p), cb.evaluate(&p)) {
                let joined: Vec<String> = sa.iter().chain(&sb).cloned().collect();
                prop_assert_eq!(all.evaluate(&p), Some(joined));
                prop_assert_eq!(any.evaluate(&p), Some(sa));
            }
        }
    }
}
