//! Flow control settings (CONTRACT §13): a route's `"flow"` and the config's `"pools"`,
//! parsed and checked where they enter (config file, CLI, database row), so the worker
//! only ever sees valid ones.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// Where a key template may look: `payload.<path>`, `header.<name>`, or one of these.
const PLAIN_ROOTS: [&str; 3] = ["provider", "action", "event_type"];

/// The longest rendered key kept; a longer one is cut at a character boundary (keys are
/// compared, never shown whole, and an attacker writes the payload).
pub const MAX_KEY_BYTES: usize = 512;

/// Most events a `deliver: "all"` window hands over (the newest kept).
pub const MAX_DEBOUNCED: usize = 100;

/// A route's flow settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flow {
    /// The key template; `None`: one key per action.
    pub key: Option<KeyTemplate>,
    /// At most this many runs of the action at once.
    pub limit: Option<u32>,
    /// At most this many runs per key at once.
    pub per_key: Option<u32>,
    /// What an event does when its key has a run waiting or running.
    pub on_conflict: OnConflict,
    /// One run per key after a quiet period.
    pub debounce: Option<Debounce>,
    /// At most `limit` starts of a key in any window of `per`.
    pub rate: Option<Rate>,
    /// The pool whose limit (and pause) the runs share.
    pub pool: Option<String>,
}

text_enum! {
    /// What an arriving event does when its key has a run waiting or running.
    pub enum OnConflict("on_conflict") {
        /// Wait for a slot (the default).
        Queue = "queue",
        /// End the new event `skipped`.
        Skip = "skip",
        /// End the waiting older events `superseded`; the running one finishes.
        Supersede = "supersede",
        /// Also stop the running run (its event `superseded`).
        CancelRunning = "cancel_running",
    }
}

impl Default for OnConflict {
    fn default() -> Self {
        OnConflict::Queue
    }
}

text_enum! {
    /// Which events of a debounce window the handler gets.
    pub enum Deliver("deliver") {
        /// The latest only.
        Last = "last",
        /// Every event of the window in `debounced`, the latest as the payload.
        All = "all",
    }
}

/// A debounce window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Debounce {
    /// Run this long after the key's latest event…
    pub quiet: Duration,
    /// …but at most this long after the window's first.
    pub max_wait: Option<Duration>,
    /// What the handler gets.
    pub deliver: Deliver,
}

/// A sliding-window rate limit on starts per key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Starts allowed per window.
    pub limit: u32,
    /// The window.
    pub per: Duration,
}

/// A key template: literal text and `{{…}}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyTemplate {
    raw: String,
    parts: Vec<KeyPart>,
}

#[derive(Debug, Clone, PartialEq)]
enum KeyPart {
    Text(String),
    /// A dot-separated path into the JSON body (numeric parts index arrays).
    Payload(Vec<String>),
    /// A lower-cased header name.
    Header(String),
    Provider,
    Action,
    EventType,
}

/// What a key renders from.
pub struct KeyInput<'a> {
    /// The stored payload envelope (`headers`, `json`).
    pub payload: &'a Value,
    /// The detected provider.
    pub provider: &'a str,
    /// The routed action.
    pub action: &'a str,
    /// The event type, when known.
    pub event_type: Option<&'a str>,
}

impl KeyTemplate {
    /// Parses `text`, refusing an unknown placeholder root or an unclosed `{{`.
    pub fn parse(text: &str) -> Result<KeyTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(KeyPart::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("key: unclosed '{{{{' in '{text}'"))?;
            parts.push(placeholder(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(KeyPart::Text(rest.to_owned()));
        }
        Ok(KeyTemplate {
            raw: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Renders the key; a missing value renders empty. Strings render bare, other JSON
    /// values as JSON text; the result is cut to [`MAX_KEY_BYTES`].
    pub fn render(&self, input: &KeyInput<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                KeyPart::Text(t) => out.push_str(t),
                KeyPart::Payload(path) => {
                    let found = input.payload.get("json").and_then(|root| {
                        path.iter().try_fold(root, |cur, key| match cur {
                            Value::Object(m) => m.get(key),
                            Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                            _ => None,
                        })
                    });
                    match found {
                        Some(Value::String(s)) => out.push_str(s),
                        Some(Value::Null) | None => {}
                        Some(other) => out.push_str(&other.to_string()),
                    }
                }
                KeyPart::Header(name) => {
                    if let Some(v) = input
                        .payload
                        .get("headers")
                        .and_then(|h| h.get(name))
                        .and_then(Value::as_str)
                    {
                        out.push_str(v);
                    }
                }
                KeyPart::Provider => out.push_str(input.provider),
                KeyPart::Action => out.push_str(input.action),
                KeyPart::EventType => out.push_str(input.event_type.unwrap_or("")),
            }
            if out.len() > MAX_KEY_BYTES {
                break;
            }
        }
        if out.len() > MAX_KEY_BYTES {
            let mut end = MAX_KEY_BYTES;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
        }
        out
    }
}

fn placeholder(inner: &str) -> Result<KeyPart, String> {
    if let Some(path) = inner.strip_prefix("payload.") {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!("key: bad path in '{{{{{inner}}}}}'"));
        }
        return Ok(KeyPart::Payload(path.split('.').map(str::to_owned).collect()));
    }
    if let Some(name) = inner.strip_prefix("header.") {
        if name.is_empty() {
            return Err(format!("key: empty header name in '{{{{{inner}}}}}'"));
        }
        return Ok(KeyPart::Header(name.to_ascii_lowercase()));
    }
    match inner {
        "provider" => Ok(KeyPart::Provider),
        "action" => Ok(KeyPart::Action),
        "event_type" => Ok(KeyPart::EventType),
        _ => Err(format!(
            "key: unknown placeholder '{{{{{inner}}}}}' (expected payload.<path>, header.<name>, {})",
            PLAIN_ROOTS.join(", ")
        )),
    }
}

/// Parses a duration: a whole number followed by `ms`, `s`, `m`, `h` or `d` (`"90s"`,
/// `"10m"`), or a bare number of seconds.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let text = match v {
        Value::Number(n) => {
            return n
                .as_u64()
                .map(Duration::from_secs)
                .ok_or_else(|| format!("bad duration {n}"));
        }
        Value::String(s) => s.trim(),
        other => return Err(format!("bad duration {other} (expected e.g. \"90s\", \"10m\", \"1h\")")),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("bad duration \"{text}\" (expected e.g. \"90s\", \"10m\", \"1h\")"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" | "" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(|| format!("bad duration \"{text}\" (units: ms, s, m, h, d)"))?;
    Ok(Duration::from_millis(ms))
}

/// A duration as written back: the largest whole unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn known_keys(obj: &Map<String, Value>, what: &str, allowed: &[&str]) -> Result<(), String> {
    let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) else {
        return Ok(());
    };
    let hint = match super::spelling::suggestion(k, allowed, '_') {
        Some(meant) => format!("did you mean '{meant}'? "),
        None => String::new(),
    };
    Err(format!(
        "{what}: unknown key '{k}' ({hint}expected {})",
        allowed.join(", ")
    ))
}

fn count(v: Option<&Value>, what: &str) -> Result<Option<u32>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!("{what} must be a whole number of at least 1")),
        },
    }
}

impl Flow {
    /// Parses a `"flow"` object; `pools` are the names it may refer to (`None`: not checked
    /// here, the store checks them).
    pub fn parse(v: &Value, pools: Option<&[String]>) -> Result<Flow, String> {
        let obj = v.as_object().ok_or("flow: must be an object")?;
        known_keys(
            obj,
            "flow",
            &["key", "concurrency", "on_conflict", "debounce", "rate", "pool"],
        )?;
        let mut flow = Flow::default();
        match obj.get("key") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => flow.key = Some(KeyTemplate::parse(s).map_err(|e| format!("flow.{e}"))?),
            Some(_) => return Err("flow: key must be a string".into()),
        }
        if let Some(c) = obj.get("concurrency").filter(|c| !c.is_null()) {
            let c = c.as_object().ok_or("flow: concurrency must be an object")?;
            known_keys(c, "flow.concurrency", &["limit", "per_key"])?;
            flow.limit = count(c.get("limit"), "flow.concurrency.limit")?;
            flow.per_key = count(c.get("per_key"), "flow.concurrency.per_key")?;
            if let (Some(limit), Some(per_key)) = (flow.limit, flow.per_key)
                && per_key > limit
            {
                return Err(format!(
                    "flow.concurrency: per_key ({per_key}) is larger than limit ({limit})"
                ));
            }
        }
        match obj.get("on_conflict") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => flow.on_conflict = s.parse().map_err(|e| format!("flow: {e}"))?,
            Some(_) => return Err("flow: on_conflict must be a string".into()),
        }
        if let Some(d) = obj.get("debounce").filter(|d| !d.is_null()) {
            let d = d.as_object().ok_or("flow: debounce must be an object")?;
            known_keys(d, "flow.debounce", &["quiet", "max_wait", "deliver"])?;
            let quiet = parse_duration(d.get("quiet").ok_or("flow.debounce: missing 'quiet'")?)
                .map_err(|e| format!("flow.debounce.quiet: {e}"))?;
            let max_wait = match d.get("max_wait") {
                None | Some(Value::Null) => None,
                Some(m) => Some(parse_duration(m).map_err(|e| format!("flow.debounce.max_wait: {e}"))?),
            };
            if quiet.is_zero() {
                return Err("flow.debounce.quiet must be longer than 0".into());
            }
            if max_wait.is_some_and(|m| m < quiet) {
                return Err("flow.debounce: max_wait is shorter than quiet".into());
            }
            let deliver = match d.get("deliver") {
                None | Some(Value::Null) => Deliver::Last,
                Some(Value::String(s)) => s.parse().map_err(|e| format!("flow.debounce: {e}"))?,
                Some(_) => return Err("flow.debounce.deliver must be \"last\" or \"all\"".into()),
            };
            flow.debounce = Some(Debounce {
                quiet,
                max_wait,
                deliver,
            });
        }
        if let Some(r) = obj.get("rate").filter(|r| !r.is_null()) {
            let r = r.as_object().ok_or("flow: rate must be an object")?;
            known_keys(r, "flow.rate", &["limit", "per"])?;
            let limit = count(r.get("limit"), "flow.rate.limit")?.ok_or("flow.rate: missing 'limit'")?;
            let per = parse_duration(r.get("per").ok_or("flow.rate: missing 'per'")?)
                .map_err(|e| format!("flow.rate.per: {e}"))?;
            if per.is_zero() || per > Duration::from_secs(31 * 86_400) {
                return Err("flow.rate.per must be longer than 0 and at most 31d".into());
            }
            flow.rate = Some(Rate { limit, per });
        }
        match obj.get("pool") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) => {
                if let Some(known) = pools
                    && !known.iter().any(|p| p == name)
                {
                    return Err(if known.is_empty() {
                        format!("flow: unknown pool '{name}' (the config defines no \"pools\")")
                    } else {
                        format!("flow: unknown pool '{name}' (known: {})", known.join(", "))
                    });
                }
                flow.pool = Some(name.clone());
            }
            Some(_) => return Err("flow: pool must be a string".into()),
        }
        Ok(flow)
    }

    /// The stored (and shown) JSON form; [`Flow::parse`] reads it back unchanged.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        if let Some(k) = &self.key {
            obj.insert("key".into(), json!(k.as_str()));
        }
        if self.limit.is_some() || self.per_key.is_some() {
            let mut c = Map::new();
            if let Some(l) = self.limit {
                c.insert("limit".into(), json!(l));
            }
            if let Some(p) = self.per_key {
                c.insert("per_key".into(), json!(p));
            }
            obj.insert("concurrency".into(), Value::Object(c));
        }
        obj.insert("on_conflict".into(), json!(self.on_conflict.as_str()));
        if let Some(d) = &self.debounce {
            let mut m = Map::new();
            m.insert("quiet".into(), json!(format_duration(d.quiet)));
            if let Some(w) = d.max_wait {
                m.insert("max_wait".into(), json!(format_duration(w)));
            }
            m.insert("deliver".into(), json!(d.deliver.as_str()));
            obj.insert("debounce".into(), Value::Object(m));
        }
        if let Some(r) = &self.rate {
            obj.insert("rate".into(), json!({"limit": r.limit, "per": format_duration(r.per)}));
        }
        if let Some(p) = &self.pool {
            obj.insert("pool".into(), json!(p));
        }
        Value::Object(obj)
    }

    /// Reads a stored `flow_json` column; a row that no longer parses has no flow (logged
    /// by the caller) rather than stopping routing.
    pub fn from_stored(text: Option<&str>) -> Result<Option<Flow>, String> {
        match text {
            None | Some("") => Ok(None),
            Some(t) => {
                let v: Value = serde_json::from_str(t).map_err(|e| format!("flow: invalid JSON: {e}"))?;
                Flow::parse(&v, None).map(Some)
            }
        }
    }

    /// The key of a run of this flow.
    pub fn render_key(&self, input: &KeyInput<'_>) -> String {
        self.key.as_ref().map(|k| k.render(input)).unwrap_or_default()
    }

    /// Whether an arriving event may end another (or itself) rather than only wait.
    pub fn ends_events(&self) -> bool {
        self.debounce.is_some() || self.on_conflict != OnConflict::Queue
    }
}

/// A pool: a limit on runs shared by every action naming it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Its name.
    pub name: String,
    /// Runs at once across every action in it.
    pub limit: u32,
}

/// Parses the config's `"pools"`: `{"name": {"limit": n}, …}`.
pub fn parse_pools(v: Option<&Value>) -> Result<Vec<Pool>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let obj = v
        .as_object()
        .ok_or("'pools' must be an object of name: {\"limit\": n}")?;
    let mut pools = Vec::new();
    for (name, p) in obj {
        let what = format!("pools.{name}");
        if name.trim().is_empty() {
            return Err("pools: a pool name must not be empty".into());
        }
        let p = p.as_object().ok_or_else(|| format!("{what}: must be an object"))?;
        known_keys(p, &what, &["limit"])?;
        let limit =
            count(p.get("limit"), &format!("{what}.limit"))?.ok_or_else(|| format!("{what}: missing 'limit'"))?;
        pools.push(Pool {
            name: name.clone(),
            limit,
        });
    }
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Flow, String> {
        Flow::parse(&v, Some(&["anthropic".to_owned()]))
    }

    #[test]
    fn the_contract_example_parses_and_round_trips() {
        let v = json!({"key": "{{payload.repository.full_name}}#{{payload.pull_request.number}}",
            "concurrency": {"limit": 4, "per_key": 1}, "on_conflict": "queue",
            "debounce": {"quiet": "90s", "max_wait": "10m", "deliver": "last"},
            "rate": {"limit": 30, "per": "1h"}, "pool": "anthropic"});
        let f = parse(v.clone()).unwrap();
        assert_eq!(f.limit, Some(4));
        assert_eq!(f.debounce.unwrap().quiet, Duration::from_secs(90));
        assert_eq!(f.rate.unwrap().per, Duration::from_secs(3600));
        assert_eq!(f.to_json(), v);
        assert_eq!(Flow::parse(&f.to_json(), None).unwrap(), f);
    }

    #[test]
    fn bad_flows_are_refused_with_the_reason() {
        let cases = [
            (json!({"pool": "openai"}), "unknown pool 'openai'"),
            (json!({"debounce": {"quiet": "90 parsecs"}}), "bad duration"),
            (json!({"key": "{{body.x}}"}), "unknown placeholder"),
            (
                json!({"concurrency": {"limit": 1, "per_key": 2}}),
                "per_key (2) is larger than limit (1)",
            ),
            (json!({"on_conflict": "drop"}), "on_conflict"),
            (
                json!({"concurency": {}}),
                "unknown key 'concurency' (did you mean 'concurrency'?",
            ),
            (json!({"rate": {"limit": 0, "per": "1m"}}), "at least 1"),
            (json!({"key": "{{payload.a"}), "unclosed"),
        ];
        for (v, want) in cases {
            let e = parse(v.clone()).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn keys_render_from_payload_headers_and_route() {
        let t = KeyTemplate::parse(
            "{{provider}}:{{payload.pr.number}}/{{header.X-Repo}}/{{payload.tags.1}}{{payload.none}}",
        )
        .unwrap();
        let payload = json!({"headers": {"x-repo": "o/r"}, "json": {"pr": {"number": 7}, "tags": ["a", "b"]}});
        let key = t.render(&KeyInput {
            payload: &payload,
            provider: "github",
            action: "review",
            event_type: None,
        });
        assert_eq!(key, "github:7/o/r/b");
        let long = json!({"json": {"k": "é".repeat(600)}});
        let key = KeyTemplate::parse("{{payload.k}}").unwrap().render(&KeyInput {
            payload: &long,
            provider: "",
            action: "",
            event_type: None,
        });
        assert!(key.len() <= MAX_KEY_BYTES && key.len() >= MAX_KEY_BYTES - 1);
    }

    #[test]
    fn pools_parse_and_refuse_bad_limits() {
        let pools = parse_pools(Some(&json!({"anthropic": {"limit": 4}}))).unwrap();
        assert_eq!(
            pools,
            vec![Pool {
                name: "anthropic".into(),
                limit: 4
            }]
        );
        assert!(parse_pools(Some(&json!({"a": {"limit": 0}}))).is_err());
        assert!(
            parse_pools(Some(&json!({"a": {"limt": 1}})))
                .unwrap_err()
                .contains("unknown key")
        );
    }
}
