//! The README's curl walk-through, run as written against the real binary.
//!
//! The Quick start runs as one shell session (the binary on `PATH`, as `cargo install` puts
//! it). In the walk-through, every `curl` line is executed with `sh` (the URL pointed at the
//! test server) and every `switchyard …` line runs the binary. After a command, a `# {…}` comment is
//! the expected JSON reply (compared exactly, a value written `…` matching anything and a
//! string ending in `…` any suffix), `# ok` the expected output, and `# → a … b` fragments
//! that must all appear in the reply. The signature snippet that follows the walk-through
//! then runs as one shell script against the service restarted with its `WEBHOOK_SECRET`.
//! The shipped examples (`commands.example.json`, `examples/config.example.json`) are
//! applied and run too.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// The server's environment, the commands, each with its expected reply, and the signature
/// snippet (a shell script).
type Walkthrough = (Vec<(String, String)>, Vec<(String, Option<String>)>, String);

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
    assert!(blocks[0].contains("switchyard serve"));
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
    // Block 3: the signature snippet, run right after the walk-through.
    let signature = blocks.get(2).expect("the signature snippet").to_string();
    assert!(signature.contains("X-Signature"), "{signature}");
    (env, commands, signature)
}

/// The expected reply of a `# {…}` comment, as JSON.
fn expected_json(comment: &str) -> Value {
    serde_json::from_str(&comment.replace(":…,", ":\"…\",")).unwrap()
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
    let (env, commands, signature) = walkthrough();
    assert!(commands.len() >= 8, "walk-through not found: {commands:?}");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut app = App::spawn("serve", &env_refs);
    let dir = tempfile::tempdir().unwrap();
    let db = app.db_path();
    let mut cli_env = env_refs.clone();
    let base = app.base.clone();
    cli_env.push(("API_BASE_URL", &base));
    let db_str = db.display().to_string();
    cli_env.push(("APP_DB_PATH", &db_str));

    for (command, expected) in &commands {
        let output = if let Some(args) = command.strip_prefix("switchyard ") {
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
            let exp = expected_json(expected);
            let actual: Value =
                serde_json::from_str(output.trim()).unwrap_or_else(|_| panic!("{command}: not JSON: {output}"));
            assert!(
                matches(&exp, &actual),
                "{command}:\n expected {exp}\n got      {actual}"
            );
        }
    }

    run_signature_snippet(&mut app, &env, &cli_env, &signature);
}

/// Restarts the service with the snippet's exports (its `WEBHOOK_SECRET`) on the same
/// database and runs the snippet in the walk-through's shell environment.
fn run_signature_snippet(app: &mut App, env: &[(String, String)], shell_env: &[(&str, &str)], snippet: &str) {
    assert_eq!(app.terminate(), Some(0));
    let mut server_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let snippet_env = exports(snippet);
    assert!(snippet_env.iter().any(|(k, _)| k == "WEBHOOK_SECRET"), "{snippet}");
    server_env.extend(snippet_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signed = App::spawn_in(&app.dir, "serve", &server_env);
    let script = snippet.replace("http://127.0.0.1:8080", &signed.base);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(shell_env.iter().copied())
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = snippet
        .lines()
        .filter_map(|l| l.strip_prefix("# {"))
        .next_back()
        .map(|rest| expected_json(&format!("{{{rest}")))
        .expect("the snippet's expected reply");
    let actual: Value = serde_json::from_str(reply.trim()).unwrap_or_else(|_| panic!("not JSON: {reply}"));
    assert!(matches(&expected, &actual), "expected {expected}\n got {actual}");
    // Unsigned, the same request is refused: the snippet's signature is what let it in.
    let unsigned = script.replace("-H \"X-Signature: sha256=$sig\"", "");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&unsigned)
        .envs(shell_env.iter().copied())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ok\":false"),
        "{unsigned}"
    );
}

/// The shipped examples: `mapping apply-config` loads the config, its `command` targets are
/// in `commands.example.json` (`mapping set --strict` refuses any other), and a GitHub push
/// to main runs one of them.
#[tokio::test]
async fn the_examples_load_and_their_command_route_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let commands = root.join("commands.example.json").display().to_string();
    let config_path = root.join("examples/config.example.json");
    let config = config_path.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let env = [("APP_COMMANDS_PATH", commands.as_str())];
    let args = ["mapping", "apply-config", "--config", &config, "--create-db"];
    let out = run_cli(dir.path(), &args, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: applied 2 mappings, 2 rules"),
        "{}",
        stdout(&out)
    );

    let file: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let routes = file["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .chain(file["rules"].as_array().unwrap());
    let targets: Vec<&str> = routes
        .filter(|r| r["handler_mode"] == "command")
        .map(|r| r["handler_target"].as_str().unwrap())
        .collect();
    assert!(!targets.is_empty(), "the example has no command route");
    for target in targets.iter().copied().chain(["not-in-the-example"]) {
        let args = [
            "mapping",
            "set",
            "--provider",
            "check",
            "--action",
            "a",
            "--handler-mode",
            "command",
            "--handler-target",
            target,
            "--strict",
        ];
        let out = run_cli(dir.path(), &args, &env);
        let expected = if target == "not-in-the-example" { 2 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{target}: {}", stderr(&out));
    }

    let app = App::spawn_in(dir.path(), "serve", &env);
    let (code, v) = app
        .post(
            "/webhook/github",
            r#"{"ref":"refs/heads/main"}"#,
            &[("x-github-event", "push")],
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(20))
        .await;
    let result = &ev["event"]["result"];
    assert_eq!(result["router"]["matched_rule"], "push-to-main", "{result}");
    // `echo-input` is `cat`: its output is the handler's input.
    assert_eq!(result["result"]["action"], "echo_push", "{result}");
    assert_eq!(
        result["result"]["payload"]["json"]["ref"], "refs/heads/main",
        "{result}"
    );
}

/// One line of the Quick start: the command (its trailing `# …` comment cut off) and what
/// it should print (`# {…}` on the next line, or `# → a … b` fragments on the same line).
struct QuickLine {
    command: String,
    expected: Option<String>,
}

/// The Quick start's shell block, line by line.
fn quick_start() -> Vec<QuickLine> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Quick start\n")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    assert!(
        section.lines().count() <= 16,
        "the Quick start is over 15 lines:\n{section}"
    );
    let block = section.split("```bash\n").nth(1).unwrap().split("```").next().unwrap();
    let mut lines: Vec<QuickLine> = Vec::new();
    for line in block.lines() {
        if let Some(reply) = line.strip_prefix("# ") {
            lines.last_mut().expect("a reply after a command").expected = Some(reply.to_string());
            continue;
        }
        let (command, comment) = match line.find("  #").or_else(|| line.find(" # ")) {
            Some(i) => (
                line[..i].trim_end(),
                Some(line[i..].trim_start().trim_start_matches("# ")),
            ),
            None => (line, None),
        };
        let expected = comment.and_then(|c| c.starts_with("→ ").then(|| c.to_string()));
        lines.push(QuickLine {
            command: command.to_string(),
            expected,
        });
    }
    lines
}

/// The Quick start as written, in a fresh directory: the binary on `PATH` (what `cargo
/// install --path .` gives), its exports as the environment, the server it starts on a free
/// port, every other line through `sh`; the failing command fails, and after `touch ready`
/// its replay is done.
#[tokio::test]
async fn readme_quick_start_runs_as_written() {
    let lines = quick_start();
    assert_eq!(lines[0].command, "cargo install --path .");
    let env = exports(&lines[1].command);
    assert!(env.iter().any(|(k, _)| k == "ADMIN_SECRET"), "{}", lines[1].command);
    assert_eq!(lines[2].command, "switchyard serve --host 127.0.0.1 & sleep 1");
    let dir = tempfile::tempdir().unwrap();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = App::spawn_in(dir.path(), "serve", &env_refs);
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    assert!(lines.len() >= 8, "{}", lines.len());
    for line in &lines[3..] {
        let command = line.command.replace("http://127.0.0.1:8080", &app.base);
        let start = Instant::now();
        loop {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .current_dir(dir.path())
                .env_clear()
                .env("PATH", &path)
                .envs(env_refs.iter().copied())
                .output()
                .unwrap();
            assert!(out.status.success(), "{command}: {}", stderr(&out));
            let text = stdout(&out);
            let missing = match &line.expected {
                None => None,
                Some(e) if e.starts_with('{') => {
                    let actual: Value =
                        serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{command}: not JSON: {text}"));
                    let exp = expected_json(e);
                    assert!(
                        matches(&exp, &actual),
                        "{command}:\n expected {exp}\n got      {actual}"
                    );
                    None
                }
                Some(e) => e
                    .trim_start_matches("→ ")
                    .split(" … ")
                    .find(|f| !text.contains(f))
                    .map(str::to_string),
            };
            let Some(missing) = missing else { break };
            // An event shown right after it was posted may still be on its way.
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{command}: expected {missing} in {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(app);
}
