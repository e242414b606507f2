//! Issue 31: what a newcomer's typos used to do silently — a misspelled config key applied
//! as a default, a handler target that does not exist, a misspelled variable ignored — is
//! refused or warned about, naming what was meant.

use std::path::Path;

use crate::helpers::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_misspelled_key_in_a_config_entry_is_refused_naming_the_entry_and_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"mappings":[{"provider":"github","action":"a","handler_mod":"command","handler_target":"x"}]}"#,
            "mappings[0]: (provider 'github') unknown key 'handler_mod' (did you mean 'handler_mode'?",
        ),
        (
            r#"{"rules":[{"provider":"github","name":"push","conditions":{"all":[]},"action":"a","priorty":5}]}"#,
            "rules[0]: (rule 'push' of provider 'github') unknown key 'priorty' (did you mean 'priority'?",
        ),
        (
            r#"{"schedules":[{"job":"digest","cron":"@daily","time_zone":"UTC"}]}"#,
            "schedules[0]: (job 'digest') unknown key 'time_zone' (did you mean 'timezone'?",
        ),
        (
            r#"{"sources":[{"name":"gh","scheme":"github","secret":["k"]}]}"#,
            "sources[0]: (source 'gh') unknown key 'secret' (did you mean 'secrets'?",
        ),
        (
            r#"{"pool":{"anthropic":{"limit":2}}}"#,
            "top level: unknown key 'pool' (did you mean 'pools'?",
        ),
        (
            r#"{"mappings":[{"provider":"linear","action":"a","flow":{"debounce":{"quiet":"1m","deliver":"all"},"rates":{}}}]}"#,
            "mappings[0]: (provider 'linear') flow: unknown key 'rates' (did you mean 'rate'?",
        ),
    ];
    for (text, expected) in cases {
        let config = write(dir.path(), "config.json", text);
        let out = run_cli(dir.path(), &["mapping", "apply-config", "--config", &config], &[]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{text}: {}", stderr(&out));
        assert!(
            !dir.path().join("data").exists(),
            "{text}: a refused file created a database"
        );
    }
}

#[test]
fn apply_config_warns_on_a_missing_command_target_and_strict_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let commands = write(dir.path(), "commands.json", r#"{"echo-input": ["cat"]}"#);
    let config = write(
        dir.path(),
        "config.json",
        r#"{"mappings":[{"provider":"unknown","action":"echo","handler_mode":"command","handler_target":"echo-inptu"}]}"#,
    );
    let env = [("APP_COMMANDS_PATH", commands.as_str())];
    let strict = ["mapping", "apply-config", "--config", &config, "--strict"];
    let out = run_cli(dir.path(), &strict, &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mappings[0] (provider 'unknown') handler_target: command 'echo-inptu' is not in")
            && stderr(&out).contains("did you mean 'echo-input'?"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("data").exists(), "a refused file created a database");

    let out = run_cli(dir.path(), &["db", "init"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_cli(dir.path(), &strict[..4], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: mappings[0] (provider 'unknown') handler_target: command 'echo-inptu'"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("ok: applied 1 mappings"), "{}", stdout(&out));
}

#[tokio::test]
async fn misspelled_variables_warn_naming_the_one_meant_and_never_the_value() {
    let app = App::spawn(
        "serve",
        &[("GITHUB_SECRET", "gh-value-1"), ("ADMIN_SECRETS", "oops-value-2")],
    );
    let logs = app.logs();
    for (name, meant) in [
        ("GITHUB_SECRET", "GITHUB_WEBHOOK_SECRET"),
        ("ADMIN_SECRETS", "ADMIN_SECRET"),
    ] {
        assert!(
            logs.contains(&format!(
                "environment variable {name} is not one switchyard reads; did you mean {meant}?"
            )),
            "{logs}"
        );
    }
    assert!(!logs.contains("gh-value-1") && !logs.contains("oops-value-2"), "{logs}");

    // The typo left GitHub unverified: a signed delivery says so, once.
    for _ in 0..2 {
        let (code, v) = app
            .post(
                "/webhook/github",
                r#"{"zen":"x"}"#,
                &[("x-hub-signature-256", "sha256=00")],
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }
    let warning = "a delivery carries github's signature (x-hub-signature-256) but no source verifies /webhook/github";
    // Log lines reach stderr through a writer thread a few milliseconds later.
    let start = std::time::Instant::now();
    while !app.logs().contains(warning) && start.elapsed() < std::time::Duration::from_secs(10) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = app.logs();
    assert_eq!(logs.matches(warning).count(), 1, "{logs}");
    assert!(logs.contains("set GITHUB_WEBHOOK_SECRET"), "{logs}");
}

#[test]
fn operator_commands_warn_about_misspelled_variables_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["sources", "list"], &[("STRIPE_SECRET", "whsec_x")]);
    assert!(
        stderr(&out).contains(
            "environment variable STRIPE_SECRET is not one switchyard reads; did you mean STRIPE_WEBHOOK_SECRET?"
        ),
        "{}",
        stderr(&out)
    );
}
