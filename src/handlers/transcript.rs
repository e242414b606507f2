//! Agent transcripts (CONTRACT §14): the Claude CLI's stream-json lines as stored, with
//! every configured secret replaced and the size capped, head and tail kept.

use super::process::ProcessOutput;

/// Default of `AGENT_TRANSCRIPT_MAX_BYTES`.
pub const DEFAULT_MAX_BYTES: usize = 262_144;

/// What a secret's value becomes.
pub const REDACTED: &str = "[redacted]";

/// Shortest value treated as a secret: shorter ones would redact ordinary words.
const MIN_SECRET_LEN: usize = 4;

/// The line that stands for the bytes left out (JSON, so the transcript stays JSONL).
pub fn elision_line(bytes: usize) -> String {
    format!("{{\"type\":\"switchyard_elided\",\"bytes\":{bytes}}}\n")
}

/// Replaces each secret's value, as written and as escaped inside a JSON string, by
/// [`REDACTED`]; longer secrets first, so one that contains another goes whole.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        forms.push(secret.clone());
        let json = serde_json::to_string(secret).unwrap_or_default();
        let escaped = json.trim_matches('"');
        if escaped != secret {
            forms.push(escaped.to_owned());
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut out = text.to_owned();
    for form in &forms {
        if out.contains(form.as_str()) {
            out = out.replace(form.as_str(), REDACTED);
        }
    }
    out
}

/// Keeps at most `max` bytes of `text`: the first and the last lines that fit in half each,
/// with an [`elision_line`] between them naming how many bytes were left out.
pub fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    // The elision line's own size, with room for the largest count.
    let budget = max.saturating_sub(elision_line(text.len()).len());
    let head_end = cut_back(text, budget / 2);
    let tail_start = cut_forward(text, text.len() - (budget - budget / 2)).max(head_end);
    let mut out = String::with_capacity(max);
    out.push_str(&text[..head_end]);
    out.push_str(&elision_line(tail_start - head_end));
    out.push_str(&text[tail_start..]);
    out
}

/// The end of the last whole line within the first `at` bytes (else a char boundary).
fn cut_back(text: &str, at: usize) -> usize {
    let at = floor_char(text, at);
    text[..at].rfind('\n').map_or(at, |i| i + 1)
}

/// The start of the first whole line at or after byte `at` (else a char boundary).
fn cut_forward(text: &str, at: usize) -> usize {
    let at = floor_char(text, at);
    if at == 0 || text.as_bytes()[at - 1] == b'\n' {
        return at;
    }
    text[at..].find('\n').map_or(at, |i| at + i + 1)
}

fn floor_char(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The stored transcript of a CLI run: its stdout (head, and the tail when the capture was
/// truncated), secrets redacted, at most `max` bytes.
pub fn from_output(out: &ProcessOutput, secrets: &[String], max: usize) -> String {
    let head = String::from_utf8_lossy(&out.stdout);
    let text = if out.stdout_truncated {
        let tail = String::from_utf8_lossy(&out.stdout_tail);
        let head_end = cut_back(&head, head.len());
        // A line cut by the head's end, or by the tail's start, is left out whole.
        let midline = head_end < head.len() || out.stdout_dropped > out.stdout_tail.len() as u64;
        let tail_start = match midline {
            true => tail.find('\n').map_or(tail.len(), |i| i + 1),
            false => 0,
        };
        let unseen = out.stdout_dropped.saturating_sub(out.stdout_tail.len() as u64) as usize;
        let left_out = (head.len() - head_end) + unseen + tail_start;
        format!("{}{}{}", &head[..head_end], elision_line(left_out), &tail[tail_start..])
    } else {
        head.into_owned()
    };
    cap(&redact(&text, secrets), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_json_escaped_secrets() {
        let secrets = vec![
            "sk-ant-123".to_owned(),
            "a\"b\\cd".to_owned(),
            "x".to_owned(),
            "sk-ant-1234".to_owned(),
        ];
        let text = r#"{"t":"key sk-ant-1234 and sk-ant-123, q a\"b\\cd","x":1}"#;
        assert_eq!(
            redact(text, &secrets),
            r#"{"t":"key [redacted] and [redacted], q [redacted]","x":1}"#
        );
    }

    #[test]
    fn cap_keeps_head_and_tail_lines() {
        let lines: String = (0..100).map(|i| format!("{{\"line\":\"{i:03}\"}}\n")).collect();
        let line_len = lines.len() / 100;
        assert_eq!(cap(&lines, lines.len()), lines);
        let capped = cap(&lines, 200);
        assert!(capped.len() <= 200, "{}", capped.len());
        assert!(capped.starts_with("{\"line\":\"000\"}\n"), "{capped}");
        assert!(capped.ends_with("{\"line\":\"099\"}\n"), "{capped}");
        let elided: Vec<&str> = capped.lines().filter(|l| l.contains("switchyard_elided")).collect();
        assert_eq!(elided.len(), 1, "{capped}");
        // Every kept line is whole, and the count is what was left out.
        let kept: usize = capped.lines().filter(|l| l.starts_with("{\"line\"")).count();
        let count: serde_json::Value = serde_json::from_str(elided[0]).unwrap();
        assert_eq!(count["bytes"].as_u64().unwrap() as usize, (100 - kept) * line_len);
        assert!(
            capped
                .lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
            "{capped}"
        );
    }

    #[test]
    fn a_truncated_capture_keeps_its_head_and_tail() {
        let out = ProcessOutput {
            stdout: b"{\"a\":1}\n{\"b\":2".to_vec(),
            stdout_truncated: true,
            stdout_tail: b"partial\"}\n{\"z\":26}\n".to_vec(),
            stdout_dropped: 1000,
            ..ProcessOutput::default()
        };
        let t = from_output(&out, &[], 1 << 20);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "{\"a\":1}");
        assert!(lines[1].contains("switchyard_elided"), "{t}");
        assert_eq!(lines[2], "{\"z\":26}");
        assert_eq!(lines.len(), 3);
    }
}
