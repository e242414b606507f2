//! Helpers for handlers that run a child process: the JSON-child runner shared by
//! `command` and `LLM_MODE=command`, and the mapping of a child's output and failures
//! to handler results.

use serde::Serialize;
use serde_json::Value;

use super::outbound::scrub_url_credentials;
use super::process::{self, EnvPolicy, ProcessSpec};
use super::{HandlerConfig, HandlerError};

/// Runs `argv` with `stdin` under the handler limits (`ACTION_COMMAND_TIMEOUT_SECONDS`,
/// the output cap, the environment `env`). The answer is stdout when it is one JSON
/// object, else the raw output (trimmed) as `<raw_prefix>stdout` / `<raw_prefix>stderr`;
/// `what` names the child in errors.
pub(crate) async fn run_json_child(
    cfg: &HandlerConfig,
    what: &str,
    argv: Vec<String>,
    stdin: Vec<u8>,
    env: EnvPolicy,
    raw_prefix: &str,
) -> Result<Value, HandlerError> {
    let spec = ProcessSpec {
        argv,
        stdin,
        timeout: cfg.command_timeout,
        max_output_bytes: cfg.max_output_bytes,
        env,
        cwd: None,
    };
    let out = process::run(&spec).await.map_err(|e| process_failure(what, e))?;
    if !out.success() {
        return Err(exit_failure(what, &out));
    }
    Ok(stdout_json_object(&out).unwrap_or_else(|| raw_output(&out, raw_prefix)))
}

/// Encodes what a handler sends (stdin, a request body) as JSON; `what` names it in the error.
pub(crate) fn encode_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>, HandlerError> {
    serde_json::to_vec(value).map_err(|e| HandlerError::new(format!("cannot encode {what}: {e}")))
}

/// Keeps at most the last `max_chars` characters of `s`, marking the cut.
pub(crate) fn tail(s: &str, max_chars: usize) -> String {
    let s = s.trim_end();
    let count = s.chars().count();
    if count <= max_chars {
        return s.to_owned();
    }
    let skip = count - max_chars;
    let kept: String = s.chars().skip(skip).collect();
    format!("…{kept}")
}

/// How much of stderr goes into a failure message (its end: where the error usually is).
const STDERR_TAIL_CHARS: usize = 600;

/// Parses stdout as a JSON object, or `None` when it is anything else.
pub(crate) fn stdout_json_object(out: &process::ProcessOutput) -> Option<Value> {
    if out.stdout_truncated {
        // A cut-off document is not the object the child meant to send.
        return None;
    }
    match serde_json::from_slice::<Value>(out.stdout.trim_ascii()) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Builds `{<prefix>stdout, <prefix>stderr}` (+ truncation flags) from raw output.
pub(crate) fn raw_output(out: &process::ProcessOutput, prefix: &str) -> Value {
    // Trimmed like the seed did: `"ok\n"` is stored as `"ok"`.
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes.trim_ascii()).into_owned();
    let mut obj = serde_json::Map::new();
    obj.insert(format!("{prefix}stdout"), text(&out.stdout).into());
    obj.insert(format!("{prefix}stderr"), text(&out.stderr).into());
    if out.stdout_truncated {
        obj.insert("stdout_truncated".into(), true.into());
    }
    if out.stderr_truncated {
        obj.insert("stderr_truncated".into(), true.into());
    }
    Value::Object(obj)
}

/// The failure for a child that ran but did not exit 0: exit code (or signal) and stderr tail.
pub(crate) fn exit_failure(what: &str, out: &process::ProcessOutput) -> HandlerError {
    let how = match (out.status_code, out.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "exited abnormally".to_owned(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let detail = if !stderr.trim().is_empty() {
        format!("; stderr: {}", tail(&stderr, STDERR_TAIL_CHARS))
    } else if !stdout.trim().is_empty() {
        // Some tools report errors on stdout; better than saying nothing.
        format!("; no stderr; stdout: {}", tail(&stdout, STDERR_TAIL_CHARS))
    } else {
        "; no output".to_owned()
    };
    HandlerError::new(scrub_url_credentials(&format!("{what} {how}{detail}"))).with_kind("exit")
}

/// The failure for a child that could not be run to completion.
pub(crate) fn process_failure(what: &str, err: process::ProcessError) -> HandlerError {
    match err {
        process::ProcessError::Timeout { after, .. } => {
            HandlerError::new(format!("{what} timed out after {}", process::fmt_duration(after))).with_kind("timeout")
        }
        other => HandlerError::new(scrub_url_credentials(&format!("{what}: {other}"))).with_kind("spawn"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_output_is_trimmed_and_failures_keep_a_bounded_scrubbed_tail() {
        let out = process::ProcessOutput {
            status_code: Some(1),
            signal: None,
            stdout: b"not json at all\n".to_vec(),
            stderr: format!("{}fatal: https://bob:s3cret@git.example/x.git\n", "x".repeat(5000)).into_bytes(),
            ..process::ProcessOutput::default()
        };
        let raw = raw_output(&out, "");
        assert_eq!(raw["stdout"], "not json at all");
        let err = exit_failure("command 'c'", &out);
        assert!(
            err.message.ends_with("fatal: https://[redacted]@git.example/x.git"),
            "{err}"
        );
        assert!(
            err.message.chars().count() < STDERR_TAIL_CHARS + 80,
            "{}",
            err.message.len()
        );
        assert!(!err.message.contains("s3cret"));
    }
}
