//! The environment a handler's child process gets: an allowlist, never the service's own.
//!
//! A child sees `PATH`, `HOME`, `LANG`, `LC_*`, `TZ`, `TMPDIR`, the names the operator lists
//! in `COMMAND_ENV_PASSTHROUGH`, and — only for LLM runners (the Claude Code CLI and
//! `LLM_COMMAND`, which is one by purpose) — `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`
//! and `CLAUDE_CODE_*`. Everything else (database URLs, cloud keys, the ingress secrets,
//! whatever `.env` holds) stays in the service.

use std::ffi::OsString;

/// Names every child may see.
const BASE: &[&str] = &["PATH", "HOME", "LANG", "TZ", "TMPDIR"];
/// Prefixes every child may see.
const BASE_PREFIXES: &[&str] = &["LC_"];
/// Names an LLM runner may see in addition.
const LLM: &[&str] = &["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"];
/// Prefixes an LLM runner may see in addition.
const LLM_PREFIXES: &[&str] = &["CLAUDE_CODE_"];

/// What the child is, which decides the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// A `commands.json` entry.
    Command,
    /// The Claude Code CLI or `LLM_COMMAND`: needs the Anthropic settings.
    LlmRunner,
}

/// True when a child of `kind` may see variable `name`.
///
/// `passthrough` entries are exact names, or prefixes ending in `*` (`AWS_*`).
pub fn allowed(name: &str, kind: ChildKind, passthrough: &[String]) -> bool {
    let listed =
        |names: &[&str], prefixes: &[&str]| names.contains(&name) || prefixes.iter().any(|p| name.starts_with(p));
    listed(BASE, BASE_PREFIXES)
        || (kind == ChildKind::LlmRunner && listed(LLM, LLM_PREFIXES))
        || passthrough.iter().map(|p| p.trim()).any(|p| match p.strip_suffix('*') {
            Some(prefix) => !prefix.is_empty() && name.starts_with(prefix),
            None => !p.is_empty() && p == name,
        })
}

/// The allowlisted part of this process's environment, for a child of `kind`.
pub fn child_env(kind: ChildKind, passthrough: &[String]) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| name.to_str().is_some_and(|n| allowed(n, kind, passthrough)))
        .collect()
}

/// The child's whole environment: nothing of ours is inherited beyond `vars`.
#[derive(Debug, Clone)]
pub struct EnvPolicy {
    /// Every variable the child gets.
    pub vars: Vec<(OsString, OsString)>,
}

impl EnvPolicy {
    /// The allowlisted part of our environment for a child of `kind` (see [`child_env()`]).
    pub fn allowlisted(kind: ChildKind, passthrough: &[String]) -> Self {
        Self {
            vars: child_env(kind, passthrough),
        }
    }

    /// Sets `name` to `value`, replacing an inherited value.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.into(), value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_get_only_the_base_list_and_passthrough() {
        let none: Vec<String> = Vec::new();
        for name in ["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"] {
            assert!(allowed(name, ChildKind::Command, &none), "{name}");
        }
        for name in [
            "DATABASE_URL",
            "INGRESS_SECRET",
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_USE_BEDROCK",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "PATHX",
            "LC",
        ] {
            assert!(!allowed(name, ChildKind::Command, &none), "{name}");
        }
        let pass = vec![
            "GITHUB_TOKEN".to_owned(),
            " AWS_* ".to_owned(),
            "*".to_owned(),
            String::new(),
        ];
        assert!(allowed("GITHUB_TOKEN", ChildKind::Command, &pass));
        assert!(allowed("AWS_REGION", ChildKind::Command, &pass));
        assert!(!allowed("GITHUB_TOKENS", ChildKind::Command, &pass));
        assert!(
            !allowed("DATABASE_URL", ChildKind::Command, &pass),
            "a bare * is not 'everything'"
        );
    }

    #[test]
    fn llm_runners_also_get_the_anthropic_settings() {
        let none: Vec<String> = Vec::new();
        for name in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
            "PATH",
        ] {
            assert!(allowed(name, ChildKind::LlmRunner, &none), "{name}");
        }
        for name in ["OPENAI_API_KEY", "DATABASE_URL", "ADMIN_SECRET", "HTTP_HANDLER_SECRET"] {
            assert!(!allowed(name, ChildKind::LlmRunner, &none), "{name}");
        }
    }

    #[test]
    fn child_env_filters_the_real_environment() {
        const SENTINEL: &str = "SWITCHYARD_CHILD_ENV_SENTINEL_51C2";
        // SAFETY: the name is unique to this test and std serialises env access.
        unsafe { std::env::set_var(SENTINEL, "leak") };
        let env = child_env(ChildKind::LlmRunner, &[]);
        assert!(env.iter().all(|(n, _)| n != SENTINEL));
        assert!(env.iter().any(|(n, _)| n == "PATH"), "PATH is kept");
        let env = child_env(ChildKind::Command, &[SENTINEL.to_owned()]);
        assert!(env.iter().any(|(n, v)| n == SENTINEL && v == "leak"));
    }
}
