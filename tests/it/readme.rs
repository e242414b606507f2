//! The README's curl walk-through, run as written against the real binary.
//!
//! Every `curl` line is executed with `sh` (the URL pointed at the test server) and every
//! `cargo run --release -- …` line runs the binary. After a command, a `# {…}` comment is
//! the expected JSON reply (compared exactly, a value written `…` matching anything and a
//! string ending in `…` any suffix), `# ok` the expected output, and `# → a … b` fragments
//! that must all appear in the reply.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// The server's environment and the commands, each with its expected reply.
type Walkthrough = (Vec<(String, String)>, Vec<(String, Option<String>)>);

fn walkthrough() -> Walkthrough {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Walk-through (curl)")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let blocks: Vec<&str> = section
        .split("```bash\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    // Block 1 starts the server: its exports are the server's environment.
    let env = exports(blocks[0]);
    assert!(blocks[0].contains("cargo run --release -- serve"));
    // Block 2: commands, each followed by optional expectation comments.
    let mut commands: Vec<(String, Option<String>)> = Vec::new();
    let mut pending = String::new();
    for line in blocks[1].lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            if let Some(last) = commands.last_mut()
                && last.1.is_none()
                && (comment.starts_with('{') || comment == "ok" || comment.starts_with("→ "))
            {
                last.1 = Some(comment.to_string());
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with("export ") {
            continue;
        }
        pending.push_str(line.trim_end_matches('\\'));
        if !line.ends_with('\\') {
            commands.push((std::mem::take(&mut pending), None));
        }
    }
    (env, commands)
}

fn exports(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// True when `actual` matches `expected`, where an expected string "…" or ending in "…"
/// stands for any value or any suffix.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if e == "…" => true,
        (Value::String(e), Value::String(a)) if e.ends_with('…') => a.starts_with(e.trim_end_matches('…')),
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av)))
        }
        _ => expected == actual,
    }
}

#[tokio::test]
async fn readme_walkthrough_runs_verbatim() {
    let (env, commands) = walkthrough();
    assert!(commands.len() >= 8, "walk-through not found: {commands:?}");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = App::spawn("serve", &env_refs);
    let dir = tempfile::tempdir().unwrap();
    let db = app.db_path();
    let mut cli_env = env_refs.clone();
    cli_env.push(("API_BASE_URL", &app.base));
    let db_str = db.display().to_string();
    cli_env.push(("APP_DB_PATH", &db_str));

    for (command, expected) in &commands {
        let output = if let Some(args) = command.strip_prefix("cargo run --release -- ") {
            let args: Vec<&str> = args.split_whitespace().collect();
            let out = run_cli(dir.path(), &args, &cli_env);
            assert!(out.status.success(), "{command}: {}", stderr(&out));
            stdout(&out)
        } else {
            assert!(command.starts_with("curl "), "unexpected walk-through line: {command}");
            let cmd = command.replace("http://127.0.0.1:8080", &app.base);
            let start = Instant::now();
            loop {
                let out = std::process::Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
                assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                // A reader fetching /events has given the worker time to finish.
                // The event's own status: its action run reads `done` a moment earlier.
                let done = serde_json::from_str::<Value>(&text).is_ok_and(|v| v["event"]["status"] == "done");
                let waiting = cmd.contains("/events/") && !done;
                if !waiting || start.elapsed() > Duration::from_secs(10) {
                    break text;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let Some(expected) = expected else { continue };
        if expected == "ok" {
            assert_eq!(output.trim(), "ok", "{command}");
        } else if let Some(fragments) = expected.strip_prefix("→ ") {
            for fragment in fragments.split(" … ") {
                assert!(output.contains(fragment), "{command}: expected {fragment} in {output}");
            }
        } else {
            let exp: Value = serde_json::from_str(&expected.replace(":…,", ":\"…\",")).unwrap();
            let actual: Value =
                serde_json::from_str(output.trim()).unwrap_or_else(|_| panic!("{command}: not JSON: {output}"));
            assert!(
                matches(&exp, &actual),
                "{command}:\n expected {exp}\n got      {actual}"
            );
        }
    }
}
