//! The `agent` handler: an agent file (front matter + system prompt) run by the Claude Code CLI.
//!
//! The target is an agent name, looked up as `.claude/agents/<name>.md` then
//! `agents/<name>.md` in the working directory, or a relative `.md` path. Anything that
//! resolves outside the working directory (absolute paths, `..`, symlinks pointing out)
//! is refused.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::claude_cli::{self, CliCall};
use super::{HandlerConfig, HandlerError, HandlerInput};

/// An agent file: front matter fields and the body (the system prompt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFile {
    /// `name`.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `model`.
    pub model: Option<String>,
    /// `tools`.
    pub tools: Vec<String>,
    /// Everything after the front matter.
    pub body: String,
}

/// Parses an agent file; a file without a `---` front matter block is all body.
pub fn parse_agent(text: &str) -> AgentFile {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut agent = AgentFile::default();
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != "---" {
        agent.body = text.trim().to_owned();
        return agent;
    }
    let mut consumed = first.len();
    let mut front = Vec::new();
    let mut closed = false;
    for line in lines {
        consumed += line.len();
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        front.push(line.trim_end());
    }
    if !closed {
        agent.body = text.trim().to_owned();
        return agent;
    }
    agent.body = text[consumed..].trim().to_owned();

    let mut list_key: Option<String> = None;
    for line in front {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(item) = trimmed.strip_prefix("- ").or_else(|| (trimmed == "-").then_some("")) {
            if list_key.as_deref() == Some("tools") {
                let item = unquote(item);
                if !item.is_empty() {
                    agent.tools.push(item.to_owned());
                }
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        list_key = value.is_empty().then(|| key.clone());
        let text = || Some(unquote(value).to_owned()).filter(|v| !v.is_empty());
        match key.as_str() {
            "name" => agent.name = text(),
            "description" => agent.description = text(),
            "model" => agent.model = text(),
            "tools" => agent.tools = parse_list(value),
            _ => {}
        }
    }
    agent
}

/// `a, b` or `[a, "b"]` → `["a", "b"]`.
fn parse_list(value: &str) -> Vec<String> {
    let v = value.trim();
    let v = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(v);
    v.split(',')
        .map(|t| unquote(t.trim()).to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// Finds the agent file for `target` inside `work_dir`, refusing anything outside it.
///
/// An escape attempt is a permanent error; a missing file is not (it may be added later).
pub fn resolve(work_dir: &Path, target: &str) -> Result<PathBuf, HandlerError> {
    let target = target.trim();
    if target.is_empty() {
        return Err(HandlerError::permanent(
            "handler mode 'agent' needs a handler_target (an agent name or a relative .md path)",
        ));
    }
    let rel = Path::new(target);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(HandlerError::permanent(format!(
            "agent target '{target}' is outside the working directory (absolute paths and '..' are refused)"
        )));
    }
    let candidates: Vec<PathBuf> = if target.ends_with(".md") || target.contains('/') {
        vec![rel.to_path_buf()]
    } else {
        vec![
            Path::new(".claude/agents").join(format!("{target}.md")),
            Path::new("agents").join(format!("{target}.md")),
        ]
    };
    let root = work_dir.canonicalize().map_err(|e| {
        HandlerError::new(format!(
            "cannot resolve the working directory {}: {e}",
            work_dir.display()
        ))
    })?;
    for candidate in &candidates {
        let Ok(real) = root.join(candidate).canonicalize() else {
            continue;
        };
        if !real.starts_with(&root) {
            return Err(HandlerError::permanent(format!(
                "agent target '{target}' resolves outside the working directory"
            )));
        }
        if real.is_file() {
            return Ok(real);
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(HandlerError::new(format!(
        "agent '{target}' not found (looked for {} in {})",
        tried.join(", "),
        root.display()
    )))
}

/// Runs the agent named by `target` with the handler input on stdin.
pub async fn run(cfg: &HandlerConfig, target: Option<&str>, input: &HandlerInput<'_>) -> Result<Value, HandlerError> {
    let work_dir = match &cfg.claude.work_dir {
        Some(d) => d.clone(),
        None => {
            std::env::current_dir().map_err(|e| HandlerError::new(format!("cannot read the working directory: {e}")))?
        }
    };
    let path = resolve(&work_dir, target.unwrap_or_default())?;
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| HandlerError::new(format!("cannot read agent file {}: {e}", path.display())))?;
    let agent = parse_agent(&text);
    if agent.body.is_empty() {
        return Err(HandlerError::permanent(format!(
            "agent file {} has no system prompt (its body is empty)",
            path.display()
        )));
    }
    let stdin =
        serde_json::to_vec(input).map_err(|e| HandlerError::new(format!("cannot encode handler input: {e}")))?;
    let model = agent.model.as_deref().or(cfg.claude.model.as_deref());
    let call = CliCall {
        system_prompt: &agent.body,
        model,
        tools: &agent.tools,
        stdin,
        timeout: cfg.claude.timeout,
    };
    // The CLI runs in `cfg.claude.work_dir`, or like us in the current directory: `work_dir`.
    claude_cli::run(cfg, &call).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_front_matter() {
        let a = parse_agent(
            "---\nname: echo\ndescription: \"Echoes\"\nmodel: sonnet\ntools: Read, Grep\ncolor: red\n---\n\nYou echo.\n",
        );
        assert_eq!(a.name.as_deref(), Some("echo"));
        assert_eq!(a.description.as_deref(), Some("Echoes"));
        assert_eq!(a.model.as_deref(), Some("sonnet"));
        assert_eq!(a.tools, ["Read", "Grep"]);
        assert_eq!(a.body, "You echo.");

        let a = parse_agent("---\ntools: [Read, 'Bash']\n---\nbody");
        assert_eq!(a.tools, ["Read", "Bash"]);
        let a = parse_agent("---\ntools:\n  - Read\n  - \"Write\"\nmodel:\n---\nbody");
        assert_eq!(a.tools, ["Read", "Write"]);
        assert_eq!(a.model, None);

        let a = parse_agent("no front matter\n---\n");
        assert_eq!(a.body, "no front matter\n---");
        let a = parse_agent("---\nunterminated: yes\n");
        assert_eq!(a.body, "---\nunterminated: yes");
        assert!(a.tools.is_empty());
    }

    #[test]
    fn shipped_echo_agent_parses() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/agents/echo.md")).unwrap();
        let a = parse_agent(&text);
        assert_eq!(a.name.as_deref(), Some("echo"));
        assert!(a.body.contains("exactly one JSON object"), "{}", a.body);
    }

    #[test]
    fn resolves_inside_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        std::fs::create_dir_all(dir.join(".claude/agents")).unwrap();
        std::fs::create_dir_all(dir.join("agents")).unwrap();
        std::fs::write(dir.join("agents/a.md"), "A").unwrap();
        std::fs::write(dir.join("agents/b.md"), "B").unwrap();
        std::fs::write(dir.join(".claude/agents/b.md"), "B2").unwrap();
        std::fs::write(tmp.path().join("outside.md"), "X").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside.md"), dir.join("agents/link.md")).unwrap();

        assert!(resolve(&dir, "a").unwrap().ends_with("agents/a.md"));
        assert!(resolve(&dir, "b").unwrap().ends_with(".claude/agents/b.md"));
        assert!(resolve(&dir, "agents/a.md").unwrap().ends_with("agents/a.md"));
        for bad in ["../outside.md", "/etc/passwd", "agents/../../outside.md", "link"] {
            let err = resolve(&dir, bad).unwrap_err();
            assert!(err.message.contains("outside the working directory"), "{bad}: {err}");
            assert!(err.permanent, "{bad}");
        }
        let err = resolve(&dir, "missing").unwrap_err();
        assert!(err.message.contains("not found") && !err.permanent, "{err}");
        assert!(resolve(&dir, " ").unwrap_err().permanent);
    }
}
