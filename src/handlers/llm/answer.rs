//! Reading a model's answer, and keeping API keys out of what is quoted from it.

use serde_json::Value;

/// Characters of a provider's reply quoted in an error.
const REPLY_START_CHARS: usize = 500;

/// Replaces every occurrence of `key` in `text`.
pub fn scrub(text: &str, key: &str) -> String {
    if key.len() < 4 {
        return text.to_owned();
    }
    text.replace(key, "[redacted]")
}

/// The start of a reply, for error messages.
pub(crate) fn start_of(text: &str) -> String {
    text.trim().chars().take(REPLY_START_CHARS).collect()
}

/// Parses a model's text answer as one JSON object, tolerating a fenced code block.
pub fn parse_json_answer(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str(t) {
        return Some(v);
    }
    let start = t.find("```")?;
    let after = &t[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```")?;
    match serde_json::from_str(body[..end].trim()) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_answers() {
        assert_eq!(parse_json_answer(" {\"a\":1} "), Some(json!({"a": 1})));
        assert_eq!(parse_json_answer("```\n{\"a\":1}\n```"), Some(json!({"a": 1})));
        assert_eq!(parse_json_answer("[1]"), None);
        assert_eq!(parse_json_answer("```json\nnope\n```"), None);
        assert_eq!(parse_json_answer("no fence"), None);
    }
}
