//! The child's process group: killed on demand or on drop, and the leader's exit
//! detected without reaping it (`waitid(WNOWAIT)`), so the group id cannot be reused
//! before the kill.

use std::io;

/// Kills the child's process group on `kill()` and on drop, until disarmed.
///
/// It stays armed only while the leader is unreaped, so the group id cannot belong to
/// anybody else when the signal is sent.
pub(super) struct GroupGuard {
    pub(super) pgid: libc::pid_t,
    pub(super) armed: bool,
}

impl GroupGuard {
    pub(super) fn kill(&self) {
        if self.armed {
            // SAFETY: killpg takes plain integers; the pgid is our unreaped child's pid.
            // ESRCH (group already empty) is expected and harmless.
            unsafe {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
        }
    }

    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resolves when process `pid` has exited, without reaping it.
pub(super) async fn wait_for_exit(pid: libc::pid_t) {
    // waitid blocks a thread; the thread always ends because the child always dies
    // (normally, by timeout, or by the guard's killpg when our future is dropped).
    let waiter = tokio::task::spawn_blocking(move || {
        loop {
            // SAFETY: siginfo_t is plain old data, so all-zero is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
            let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    });
    // A join error (runtime shutting down) is treated as "exited": the caller then
    // kills the group and reaps, which is the safe direction.
    let _ = waiter.await;
}
