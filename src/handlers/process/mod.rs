//! The one subprocess runner every handler uses.
//!
//! No shell is involved: `argv[0]` is executed directly with `argv[1..]` as arguments.
//! The child leads its own process group so that a timeout (or the caller giving up)
//! kills everything it started, grandchildren included. stdin is written by a concurrent
//! future and then closed; stdout and stderr are drained concurrently, each keeping at
//! most `max_output_bytes` and reading-and-discarding the rest, so a chatty child never
//! blocks on a full pipe and our memory stays bounded.
//!
//! **The group is killed as soon as the main child exits.** A handler run is
//! self-contained: anything it backgrounded would otherwise outlive the run with no
//! timeout and no owner, and would keep our pipes open. Output already written into the
//! pipes is not lost by the kill; we keep reading until EOF. A process that escaped the
//! group (`setsid`) and still holds a pipe open is not waited for longer than
//! [`PIPE_GRACE`] after the main child exits.
//!
//! The exit is detected with `waitid(WNOWAIT)`, which does not reap: the group is killed
//! while the leader is still a zombie, so its pid (and thus the group id) cannot have
//! been reused by an unrelated process when we send the signal.

pub mod capture;
mod group;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use capture::{Capture, drain, write_stdin};
use group::{GroupGuard, wait_for_exit};

pub use super::child_env::EnvPolicy;

/// How long to keep reading pipes after the main child exited (and its group was killed).
pub const PIPE_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Program and arguments; `argv[0]` is looked up on `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// Bytes written to the child's stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// Wall-clock limit; on expiry the whole process group is killed.
    pub timeout: Duration,
    /// Maximum bytes kept from each of stdout and stderr; the rest is read and discarded.
    pub max_output_bytes: usize,
    /// Environment the child gets.
    pub env: EnvPolicy,
    /// Working directory; `None` inherits ours.
    pub cwd: Option<PathBuf>,
}

/// What came back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOutput {
    /// Exit code; `None` when the child was killed by a signal.
    pub status_code: Option<i32>,
    /// Signal that killed the child, if any.
    pub signal: Option<i32>,
    /// Captured stdout, at most `max_output_bytes`.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most `max_output_bytes`.
    pub stderr: Vec<u8>,
    /// Whether stdout had more bytes than were kept.
    pub stdout_truncated: bool,
    /// Whether stderr had more bytes than were kept.
    pub stderr_truncated: bool,
    /// When stdout was truncated: its last bytes (at most [`capture::TAIL_BYTES`]).
    pub stdout_tail: Vec<u8>,
    /// How many bytes of stdout were not kept in `stdout`.
    pub stdout_dropped: u64,
}

impl ProcessOutput {
    /// True when the child exited with code 0.
    pub fn success(&self) -> bool {
        self.status_code == Some(0)
    }
}

/// Why a process could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The argv was empty.
    #[error("nothing to run: the command line (argv) is empty")]
    EmptyArgv,
    /// The program does not exist (or is not on `PATH`).
    #[error("program '{program}' not found (is it installed and on PATH?)")]
    NotFound {
        /// `argv[0]`.
        program: String,
    },
    /// The program exists but could not be started (permissions, bad cwd, …).
    #[error("failed to start '{program}': {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// The process group was killed because the timeout expired.
    #[error("'{program}' timed out after {}", fmt_duration(*after))]
    Timeout {
        /// `argv[0]`.
        program: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Reading the pipes or waiting for the child failed.
    #[error("I/O error while running a subprocess: {0}")]
    Io(#[from] io::Error),
}

/// Formats a duration as whole seconds when it is whole ("90s"), else with decimals ("1.5s").
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Runs `spec` to completion (or timeout) and returns what it printed.
pub async fn run(spec: &ProcessSpec) -> Result<ProcessOutput, ProcessError> {
    let program = spec.argv.first().ok_or(ProcessError::EmptyArgv)?;
    check_cwd(spec, program)?;
    let mut child = spawn(spec, program)?;
    let started = Instant::now();
    let pid = child
        .id()
        .and_then(|id| libc::pid_t::try_from(id).ok())
        .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
    // Declared after `child` so that, if this future is dropped, the guard's killpg runs
    // before the Child's own drop (which may hand the pid to tokio's reaper).
    let mut group = GroupGuard { pgid: pid, armed: true };
    tracing::debug!(program = %crate::escape::escaped(program), pid, "spawned subprocess");

    let (stdout, stderr) = take_pipes(&mut child)?;
    let stdin = child.stdin.take();
    let run = supervise(spec, program, pid, &group, stdin, stdout, stderr).await;

    // The leader has exited (or been killed), so this returns promptly and reaps it.
    let status = child.wait().await?;
    group.disarm();
    tracing::debug!(program = %crate::escape::escaped(program), pid, code = ?status.code(), signal = ?status.signal(), elapsed_ms = started.elapsed().as_millis() as u64, "subprocess finished");

    if run.timed_out {
        return Err(ProcessError::Timeout {
            program: program.clone(),
            after: spec.timeout,
        });
    }
    if let Some(e) = run.read_error {
        return Err(ProcessError::Io(e));
    }
    let mut out = run.out;
    Ok(ProcessOutput {
        status_code: status.code(),
        signal: status.signal(),
        stdout_tail: out.take_tail(),
        stdout_dropped: out.dropped,
        stdout: out.data,
        stderr: run.err.data,
        stdout_truncated: out.truncated,
        stderr_truncated: run.err.truncated,
    })
}

/// Refuses a missing working directory up front: spawn reports it as ENOENT, which
/// would otherwise be misreported as "program not found".
fn check_cwd(spec: &ProcessSpec, program: &str) -> Result<(), ProcessError> {
    match &spec.cwd {
        Some(cwd) if !cwd.is_dir() => Err(ProcessError::Spawn {
            program: program.to_owned(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("working directory {} does not exist", cwd.display()),
            ),
        }),
        _ => Ok(()),
    }
}

/// Starts the child as the leader of its own process group, with piped output and the
/// environment of `spec.env`.
fn spawn(spec: &ProcessSpec, program: &str) -> Result<Child, ProcessError> {
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .stdin(if spec.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.env_clear().envs(spec.env.vars.iter().map(|(n, v)| (n, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.spawn().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ProcessError::NotFound {
            program: program.to_owned(),
        },
        _ => ProcessError::Spawn {
            program: program.to_owned(),
            source,
        },
    })
}

/// The child's stdout and stderr pipes.
fn take_pipes(child: &mut Child) -> io::Result<(ChildStdout, ChildStderr)> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("child stdout was not captured"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("child stderr was not captured"))?;
    Ok((stdout, stderr))
}

/// What [`supervise`] saw: the captured output, and whether the run went wrong.
struct Supervised {
    out: Capture,
    err: Capture,
    timed_out: bool,
    read_error: Option<io::Error>,
}

/// Feeds stdin and drains both pipes until the leader has exited and the pipes are
/// closed: kills the group when the leader exits or the timeout expires, and stops
/// waiting for pipes [`PIPE_GRACE`] after the exit.
async fn supervise(
    spec: &ProcessSpec,
    program: &str,
    pid: libc::pid_t,
    group: &GroupGuard,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: ChildStderr,
) -> Supervised {
    let mut out = Capture::new(spec.max_output_bytes);
    let mut err = Capture::new(spec.max_output_bytes);
    let mut timed_out = false;
    let mut read_error: Option<io::Error> = None;
    {
        let stdin_f = write_stdin(stdin, &spec.stdin);
        let out_f = drain(stdout, &mut out);
        let err_f = drain(stderr, &mut err);
        let exit_f = wait_for_exit(pid);
        let deadline = tokio::time::sleep(spec.timeout);
        let grace = tokio::time::sleep(PIPE_GRACE);
        tokio::pin!(stdin_f, out_f, err_f, exit_f, deadline, grace);

        let (mut stdin_done, mut out_done, mut err_done, mut exited) = (false, false, false, false);
        while !(exited && out_done && err_done) {
            tokio::select! {
                () = &mut stdin_f, if !stdin_done => stdin_done = true,
                r = &mut out_f, if !out_done => {
                    out_done = true;
                    if let Err(e) = r { read_error.get_or_insert(e); }
                }
                r = &mut err_f, if !err_done => {
                    err_done = true;
                    if let Err(e) = r { read_error.get_or_insert(e); }
                }
                _ = &mut exit_f, if !exited => {
                    // Leader exited (not yet reaped): take its backgrounded helpers with it.
                    exited = true;
                    group.kill();
                    grace.as_mut().reset(tokio::time::Instant::now() + PIPE_GRACE);
                }
                () = &mut deadline, if !exited && !timed_out => {
                    timed_out = true;
                    tracing::warn!(program = %crate::escape::escaped(program), pid, timeout = %fmt_duration(spec.timeout), "subprocess timed out; killing its process group");
                    group.kill();
                }
                () = &mut grace, if exited => {
                    tracing::warn!(program = %crate::escape::escaped(program), pid, "pipes still open {} after exit (a process escaped the group?); not waiting for them", fmt_duration(PIPE_GRACE));
                    break;
                }
            }
        }
    }
    Supervised {
        out,
        err,
        timed_out,
        read_error,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::handlers::child_env::{self, ChildKind};
    use std::path::Path;

    /// A spec for `sh -c <script>` with generous defaults.
    pub(crate) fn sh(script: &str) -> ProcessSpec {
        ProcessSpec {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            stdin: Vec::new(),
            timeout: Duration::from_secs(60),
            max_output_bytes: 1 << 20,
            env: EnvPolicy::allowlisted(ChildKind::Command, &[]),
            cwd: None,
        }
    }

    /// True when `pid` no longer runs: gone, or a zombie nobody has reaped yet.
    ///
    /// A SIGKILLed grandchild is reparented to pid 1, which in containers may never reap
    /// it, so `kill(pid, 0)` alone could keep succeeding on a dead process.
    pub(crate) fn is_dead(pid: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    /// Waits up to 10 s for `pid` to be dead.
    pub(crate) async fn wait_dead(pid: libc::pid_t) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if is_dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        is_dead(pid)
    }

    /// Waits up to 30 s for `path` to exist and returns its contents.
    pub(crate) async fn wait_for_file(path: &Path) -> String {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = std::fs::read_to_string(path) {
                return s;
            }
            assert!(Instant::now() < until, "{} never appeared", path.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pids(s: &str) -> Vec<libc::pid_t> {
        s.split_whitespace().map(|p| p.parse().expect("pid")).collect()
    }

    fn vm_hwm_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM line")
    }

    #[tokio::test]
    async fn captures_stdout_stderr_and_exit_code() {
        let out = run(&sh("printf out; printf err >&2; exit 3")).await.unwrap();
        assert_eq!(out.stdout, b"out");
        assert_eq!(out.stderr, b"err");
        assert_eq!(out.status_code, Some(3));
        assert_eq!(out.signal, None);
        assert!(!out.success());
        assert!(!out.stdout_truncated && !out.stderr_truncated);
    }

    #[tokio::test]
    async fn reports_signal_death() {
        let out = run(&sh("kill -TERM $$")).await.unwrap();
        assert_eq!(out.status_code, None);
        assert_eq!(out.signal, Some(libc::SIGTERM));
    }

    #[tokio::test]
    async fn stdin_is_delivered_and_closed() {
        // 1 MB through `cat`: only works if stdin is written while stdout is drained.
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut spec = sh("cat");
        spec.stdin = data.clone();
        spec.max_output_bytes = 2_000_000;
        let out = run(&spec).await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, data);
    }

    #[tokio::test]
    async fn child_that_never_reads_stdin_does_not_deadlock() {
        let mut spec = sh("echo done");
        spec.stdin = vec![b'x'; 1_000_000];
        spec.timeout = Duration::from_secs(30);
        let started = Instant::now();
        let out = run(&spec).await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, b"done\n");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn missing_program_is_not_found_naming_it() {
        let mut spec = sh("");
        spec.argv = vec!["switchyard-no-such-program-xyz".into()];
        let err = run(&spec).await.unwrap_err();
        assert!(matches!(err, ProcessError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("switchyard-no-such-program-xyz"), "{err}");
    }

    #[tokio::test]
    async fn empty_argv_and_bad_cwd_are_errors() {
        let mut spec = sh("");
        spec.argv.clear();
        assert!(matches!(run(&spec).await, Err(ProcessError::EmptyArgv)));
        let mut spec = sh("true");
        spec.cwd = Some("/nonexistent/switchyard-dir".into());
        let err = run(&spec).await.unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/switchyard-dir"), "{err}");
    }

    #[tokio::test]
    async fn cwd_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sh("pwd");
        spec.cwd = Some(dir.path().to_path_buf());
        let out = run(&spec).await.unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        let expected = dir.path().canonicalize().unwrap();
        assert_eq!(Path::new(printed.trim()).canonicalize().unwrap(), expected);
    }

    #[tokio::test]
    async fn child_gets_exactly_the_policy_environment() {
        const NAME: &str = "SWITCHYARD_TEST_SECRET_7F3A";
        // SAFETY: the name is unique to this test and std serialises env access.
        unsafe { std::env::set_var(NAME, "hunter2") };
        let mut spec = sh("env");
        spec.env = EnvPolicy::allowlisted(ChildKind::Command, &[]).with("SWITCHYARD_TEST_SET", "set-value");
        let out = run(&spec).await.unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        assert!(!env.contains(NAME), "{env}");
        assert!(!env.contains("hunter2"), "{env}");
        assert!(env.contains("SWITCHYARD_TEST_SET=set-value"), "{env}");
        let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(n, _)| n)).collect();
        // `sh` adds PWD (and may add OLDPWD/SHLVL/_) itself; nothing else of ours leaks.
        for name in names {
            assert!(
                child_env::allowed(name, ChildKind::Command, &[])
                    || ["SWITCHYARD_TEST_SET", "PWD", "OLDPWD", "SHLVL", "_"].contains(&name),
                "{name} leaked: {env}"
            );
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let mut spec = sh(&format!(
            "sleep 30 & echo $$ $! > {p}.tmp; mv {p}.tmp {p}; wait",
            p = pidfile.display()
        ));
        spec.timeout = Duration::from_secs(2);
        let started = Instant::now();
        let err = run(&spec).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("timed out after 2s"), "{err}");
        assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        let pids = pids(&wait_for_file(&pidfile).await);
        assert_eq!(pids.len(), 2);
        for pid in pids {
            assert!(wait_dead(pid).await, "pid {pid} survived the timeout");
        }
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let spec = sh(&format!(
            "sleep 30 & echo $$ $! > {p}.tmp; mv {p}.tmp {p}; wait",
            p = pidfile.display()
        ));
        let written = tokio::select! {
            r = run(&spec) => panic!("run finished unexpectedly: {r:?}"),
            s = wait_for_file(&pidfile) => s,
        };
        // The run future has been dropped here.
        for pid in pids(&written) {
            assert!(wait_dead(pid).await, "pid {pid} survived the drop");
        }
    }

    #[tokio::test]
    async fn background_helpers_are_killed_when_the_child_exits() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let spec = sh(&format!("sleep 30 & echo $! > {}; echo hi", pidfile.display()));
        let started = Instant::now();
        let out = run(&spec).await.unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert!(started.elapsed() < Duration::from_secs(20));
        let pid = pids(&wait_for_file(&pidfile).await)[0];
        assert!(wait_dead(pid).await, "background pid {pid} survived");
    }

    #[tokio::test]
    async fn escaped_process_holding_pipes_does_not_hang_us() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // `setsid` leaves our process group, so the exit-kill cannot reach it, and it
        // keeps stdout open for 30 s.
        let spec = sh(&format!(
            "setsid sh -c 'echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 30' & \
             while [ ! -f {p} ]; do sleep 0.05; done; echo main",
            p = pidfile.display()
        ));
        let started = Instant::now();
        let out = run(&spec).await.unwrap();
        let elapsed = started.elapsed();
        let pid = pids(&wait_for_file(&pidfile).await)[0];
        // Clean up the escapee before asserting, so a failure does not leak it.
        // SAFETY: plain kill of a pid we just learned about.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(out.stdout, b"main\n");
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    }

    #[tokio::test]
    async fn huge_output_is_capped_and_memory_stays_bounded() {
        const CAP: usize = 1 << 20;
        let before = vm_hwm_kib();
        let mut spec = sh("head -c 100000000 /dev/zero; head -c 50000000 /dev/zero >&2");
        spec.max_output_bytes = CAP;
        let out = run(&spec).await.unwrap();
        let after = vm_hwm_kib();
        assert!(out.success());
        assert_eq!(out.stdout.len(), CAP);
        assert_eq!(out.stderr.len(), CAP);
        assert!(out.stdout_truncated && out.stderr_truncated);
        // Two captures of CAP plus a few MB of slack (parallel tests share this process);
        // keeping everything would add ~150 MB.
        let grew_kib = after.saturating_sub(before);
        assert!(
            grew_kib < (2 * CAP as u64) / 1024 + 16 * 1024,
            "peak RSS grew by {grew_kib} KiB"
        );
    }

    #[test]
    fn capture_keeps_prefix_and_flags_truncation() {
        let mut c = Capture::new(5);
        c.push(b"abc");
        assert!(!c.truncated);
        c.push(b"defg");
        c.push(b"h");
        assert_eq!(c.data, b"abcde");
        assert!(c.truncated);
        assert_eq!((c.dropped, c.take_tail()), (3, b"fgh".to_vec()));
        // The tail keeps the last TAIL_BYTES of a long output.
        let mut long = Capture::new(1);
        for i in 0..(3 * capture::TAIL_BYTES / 1000) {
            long.push(format!("{i:0>1000}").as_bytes());
        }
        let tail = long.take_tail();
        assert_eq!(tail.len(), capture::TAIL_BYTES);
        assert!(tail.ends_with(format!("{:0>1000}", 3 * capture::TAIL_BYTES / 1000 - 1).as_bytes()));
        let mut exact = Capture::new(3);
        exact.push(b"abc");
        assert!(!exact.truncated);
    }

    #[test]
    fn durations_format_compactly() {
        assert_eq!(fmt_duration(Duration::from_secs(90)), "90s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }
}
