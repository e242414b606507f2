//! Shared test helpers: spawn the binary, talk to it, wait for states.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// A running `switchyard` process and its scratch directory.
pub struct App {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub logs: Arc<Mutex<String>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Environment every spawned process gets: a private db file, quiet, fast leases.
fn base_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(dir).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("APP_DB_PATH", dir.join("data/events.sqlite3"));
    cmd.env("HOST", "127.0.0.1").env("PORT", "0");
    cmd.env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The `addr` field of the listening line, in the text (`addr=…`) or JSON (`"addr":"…"`) format.
fn listening_addr(line: &str) -> Option<String> {
    let (start, end): (&str, fn(char) -> bool) = if line.contains("\"addr\":\"") {
        ("\"addr\":\"", |c| c == '"')
    } else {
        ("addr=", char::is_whitespace)
    };
    let i = line.find(start)? + start.len();
    Some(line[i..].chars().take_while(|c| !end(*c)).collect())
}

impl App {
    /// Starts `switchyard <role>` in a fresh temp dir with `env`.
    pub fn spawn(role: &str, env: &[(&str, &str)]) -> App {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut app = App::spawn_in(&dir, role, env);
        app._tmp = Some(tmp);
        app
    }

    /// Starts `switchyard <role>` in `dir` (which the caller keeps alive).
    pub fn spawn_in(dir: &Path, role: &str, env: &[(&str, &str)]) -> App {
        let mut child = base_command(dir, &[role], env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("switchyard listening")
                    && let Some(addr) = listening_addr(&line)
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(addr);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = if role == "worker" {
            String::new()
        } else {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(addr) => format!("http://{addr}"),
                Err(_) => {
                    let _ = child.kill();
                    panic!("switchyard did not start; logs:\n{}", logs.lock().unwrap());
                }
            }
        };
        App {
            child,
            base,
            dir: dir.to_path_buf(),
            logs,
            _tmp: None,
        }
    }

    /// `POST path` with JSON body text and headers.
    pub async fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let client = client();
        let mut req = client.post(format!("{}{}", self.base, path)).body(body.to_string());
        req = req.header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON reply {status}: {text}")),
        )
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = client().get(format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON reply {status}: {text}")),
        )
    }

    /// Polls `GET /events/{id}` until the event has `status`, or panics after `within`.
    pub async fn wait_status(&self, row_id: i64, status: &str, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (code, v) = self
                .get(&format!("/events/{row_id}"), &[("x-admin-secret", "admin")])
                .await;
            if code == 200 && v["event"]["status"] == status {
                return v;
            }
            if start.elapsed() > within {
                panic!(
                    "event {row_id} not {status} after {within:?}: {v}\nlogs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The SQLite file this app uses.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("data/events.sqlite3")
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("switchyard did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of `GET /metrics`.
pub async fn metrics_text(app: &App) -> String {
    let resp = client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("GET /metrics");
    resp.text().await.expect("metrics text")
}

/// Runs `switchyard args…` to completion in `dir`.
pub fn run_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    base_command(dir, args, env)
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

/// Creates the SQLite database in `dir` (`switchyard db init`), as a user does before
/// the first operator command when no service has run there yet.
pub fn init_db(dir: &Path) {
    let out = run_cli(dir, &["db", "init"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Maps provider `unknown` to `action` with handler `mode` and `target`, via the CLI.
pub fn route_unknown(dir: &Path, action: &str, mode: &str, target: &str) {
    set_mapping(dir, "unknown", action, mode, target);
}

/// Maps `provider` to `action` with handler `mode` and `target`, via the CLI.
pub fn set_mapping(dir: &Path, provider: &str, action: &str, mode: &str, target: &str) {
    let args = [
        "mapping",
        "set",
        "--provider",
        provider,
        "--action",
        action,
        "--handler-mode",
        mode,
        "--handler-target",
        target,
        "--create-db",
    ];
    let out = run_cli(dir, &args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Stdout of an output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr of an output as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An HTTP client without proxies or pooling surprises: idle connections are dropped
/// after 5 s, before the server's 10 s header-read timeout closes them (a request sent on
/// a connection the server is closing at that moment fails without an answer).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// HMAC-SHA256 hex of `body` with `secret`.
pub fn sign(secret: &str, body: &str) -> String {
    switchyard::ingest::signature::sign_hex(secret.as_bytes(), body.as_bytes())
}

/// The admin header used by tests that set ADMIN_SECRET=admin.
pub const ADMIN: (&str, &str) = ("x-admin-secret", "admin");
