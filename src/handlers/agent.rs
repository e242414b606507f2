//! The `agent` handler: an agent file (front matter + system prompt) run by the Claude Code CLI.
//!
//! The target is an agent name, looked up as `.claude/agents/<name>.md`, then
//! `agents/<name>.md` (then the seed's `app/agents/<name>.md`) in the working directory,
//! or a relative `.md` path. Anything that
//! resolves outside the working directory (absolute paths, `..`, symlinks pointing out)
//! is refused, and so is anything that is not a `.md` file (a target `./.env` must not
//! become a system prompt sent to an API). Front matter `model` (unless `inherit`) is
//! honoured; `tools` is the exact list of built-in tools the agent is offered — none when
//! the file lists none, unless `CLAUDE_AGENT_DEFAULT_TOOLS` says otherwise. The output is
//! the agent's JSON object with the run's metadata under `_agent` (see [`claude_cli`]).

use std::path::{Component, Path, PathBuf};

use super::claude_cli::{self, CliCall, DefaultTools};
use super::{HandlerConfig, HandlerError, HandlerInput, Ran, RunOptions};

/// Largest system prompt passed to the CLI: Linux limits one argument to 128 KiB.
pub const MAX_PROMPT_BYTES: usize = 120 * 1024;

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
    let (front, body) = split_front_matter(text);
    let mut agent = AgentFile {
        body: body.trim().to_owned(),
        ..AgentFile::default()
    };
    read_front_matter(&mut agent, &front);
    agent
}

/// The front matter lines (between a first line `---` and the next `---`, right-trimmed)
/// and the body after it; no front matter (none opened, or never closed) is all body.
fn split_front_matter(text: &str) -> (Vec<&str>, &str) {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != "---" {
        return (Vec::new(), text);
    }
    let mut consumed = first.len();
    let mut front = Vec::new();
    for line in lines {
        consumed += line.len();
        if line.trim_end() == "---" {
            return (front, &text[consumed..]);
        }
        front.push(line.trim_end());
    }
    (Vec::new(), text)
}

/// A `key: |` (literal) or `key: >` (folded) block scalar being collected.
struct Block<'a> {
    key: String,
    folded: bool,
    lines: Vec<&'a str>,
}

impl Block<'_> {
    /// Stores the collected text under its key.
    fn finish(self, agent: &mut AgentFile) {
        let text = self.lines.join(if self.folded { " " } else { "\n" }).trim().to_owned();
        agent.set_text(&self.key, Some(text).filter(|t| !t.is_empty()));
    }
}

/// Reads the front matter's keys (the small YAML subset agent files use: `key: value`,
/// `tools` as a flow or block list, block scalars) into `agent`.
fn read_front_matter(agent: &mut AgentFile, front: &[&str]) {
    let mut list_key: Option<String> = None;
    let mut block: Option<Block<'_>> = None;
    for &line in front {
        let trimmed = line.trim();
        if let Some(b) = block.as_mut() {
            if line.starts_with([' ', '\t']) || trimmed.is_empty() {
                b.lines.push(trimmed);
                continue;
            }
            if let Some(b) = block.take() {
                b.finish(agent);
            }
        }
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
        // Keys start at column 0; an indented line continues a block value
        // (`description: |`), whose text may itself contain `model: …`.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = strip_comment(value.trim());
        list_key = value.is_empty().then(|| key.clone());
        if let Some(indicator @ ('|' | '>')) = value.chars().next()
            && value[1..].chars().all(|c| matches!(c, '-' | '+'))
        {
            block = Some(Block {
                key,
                folded: indicator == '>',
                lines: Vec::new(),
            });
            continue;
        }
        match key.as_str() {
            "tools" => agent.tools = parse_list(value),
            other => agent.set_text(other, Some(unquote(value).to_owned()).filter(|v| !v.is_empty())),
        }
    }
    if let Some(b) = block {
        b.finish(agent);
    }
}

impl AgentFile {
    /// Stores a text field of the front matter; unknown keys are ignored.
    fn set_text(&mut self, key: &str, value: Option<String>) {
        match key {
            "name" => self.name = value,
            "description" => self.description = value,
            "model" => self.model = value,
            _ => {}
        }
    }
}

/// Drops a trailing ` # comment` from an unquoted value.
fn strip_comment(value: &str) -> &str {
    if value.starts_with(['"', '\'']) {
        return value;
    }
    value.split_once(" #").map_or(value, |(v, _)| v.trim_end())
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
        if !is_markdown(rel) {
            return Err(HandlerError::permanent(format!(
                "agent target '{target}' is not an agent file: a path must name a .md file"
            )));
        }
        vec![rel.to_path_buf()]
    } else {
        vec![
            Path::new(".claude/agents").join(format!("{target}.md")),
            Path::new("agents").join(format!("{target}.md")),
            // Where the seed (Python) version kept them, so its agent files work unmoved.
            Path::new("app/agents").join(format!("{target}.md")),
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
        if !is_markdown(&real) {
            // A symlink `agents/x.md -> ../.env` stays inside but is not an agent file.
            return Err(HandlerError::permanent(format!(
                "agent target '{target}' resolves to {}, which is not a .md file",
                real.display()
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

/// The built-in tools an agent is offered: its file's list, else `CLAUDE_AGENT_DEFAULT_TOOLS`
/// (none by default; `None` = every tool).
pub fn offered_tools<'a>(listed: &'a [String], default: &'a DefaultTools) -> Option<&'a [String]> {
    match default {
        _ if !listed.is_empty() => Some(listed),
        DefaultTools::List(list) => Some(list),
        DefaultTools::All => None,
    }
}

/// True when `path` names a Markdown file (`.md`).
fn is_markdown(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "md")
}

/// Reads and checks the agent file `target` names.
async fn load(cfg: &HandlerConfig, target: Option<&str>) -> Result<AgentFile, HandlerError> {
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
    if agent.body.len() > MAX_PROMPT_BYTES {
        return Err(HandlerError::permanent(format!(
            "agent file {} is too large: its system prompt has {} bytes, at most {MAX_PROMPT_BYTES} fit on a command line",
            path.display(),
            agent.body.len()
        )));
    }
    Ok(agent)
}

/// Runs the agent named by `target` with the handler input on stdin: its answer, and the
/// run's usage and transcript.
///
/// No `--json-schema`: the instruction asks for one JSON object and the answer is parsed
/// from the text, while a schema makes the CLI ask a model that answered in text once
/// more to call its `StructuredOutput` tool, doubling that run's tokens (measured in
/// `tests/it/claude_e2e.rs`).
pub async fn run(cfg: &HandlerConfig, target: Option<&str>, input: &HandlerInput<'_>, options: &RunOptions) -> Ran {
    let prepared = match load(cfg, target).await {
        Ok(agent) => super::encode_json("handler input", input).map(|stdin| (agent, stdin)),
        Err(e) => Err(e),
    };
    let (agent, stdin) = match prepared {
        Ok(p) => p,
        Err(e) => return Ran::failed(e),
    };
    // `inherit` (what Claude Code's /agents writes for "same as the main conversation")
    // names no model here: fall back to CLAUDE_AGENT_MODEL, else the CLI's default.
    let own_model = agent.model.as_deref().filter(|m| !m.eq_ignore_ascii_case("inherit"));
    let model = own_model.or(cfg.claude.model.as_deref());
    let call = CliCall {
        system_prompt: &agent.body,
        model,
        tools: offered_tools(&agent.tools, &cfg.claude.default_tools),
        json_schema: None,
        stdin,
        timeout: cfg.claude.timeout,
        transcript: true,
        max_budget_usd: options.max_budget_usd,
    };
    let (answer, report) = claude_cli::run_reported(cfg, &call).await;
    Ran { answer, report }
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

        let a = parse_agent(
            "---\ndescription: |\n  Use when: asked\n  model: opus\nmodel: haiku # fast\ntools: [Read]\n---\nB",
        );
        assert_eq!(a.model.as_deref(), Some("haiku"));
        assert_eq!(a.tools, ["Read"]);
        assert_eq!(a.description.as_deref(), Some("Use when: asked\nmodel: opus"));
        let a = parse_agent("---\ndescription: >-\n  one\n  two\n---\nB");
        assert_eq!(a.description.as_deref(), Some("one two"));

        let a = parse_agent("no front matter\n---\n");
        assert_eq!(a.body, "no front matter\n---");
        let a = parse_agent("---\nunterminated: yes\n");
        assert_eq!(a.body, "---\nunterminated: yes");
        assert!(a.tools.is_empty());
    }

    #[test]
    fn the_file_decides_the_tools_else_the_default_else_none() {
        let listed = vec!["Read".to_owned()];
        let none = DefaultTools::List(Vec::new());
        let grep = DefaultTools::List(vec!["Grep".to_owned()]);
        assert_eq!(offered_tools(&listed, &DefaultTools::All), Some(listed.as_slice()));
        assert_eq!(offered_tools(&listed, &grep), Some(listed.as_slice()));
        assert_eq!(offered_tools(&[], &none), Some(&[][..]));
        assert_eq!(offered_tools(&[], &grep), Some(&["Grep".to_owned()][..]));
        assert_eq!(offered_tools(&[], &DefaultTools::All), None);
    }

    #[test]
    fn shipped_echo_agent_parses() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/agents/echo.md")).unwrap();
        let a = parse_agent(&text);
        assert_eq!(a.name.as_deref(), Some("echo"));
        assert!(a.body.contains("exactly one JSON object"), "{}", a.body);
        assert!(a.tools.is_empty(), "the shipped agent has no tools: {:?}", a.tools);
        assert!(text.contains("\ntools: []\n"), "and says so");
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
        std::fs::create_dir_all(dir.join("app/agents")).unwrap();
        std::fs::write(dir.join("app/agents/seed.md"), "S").unwrap();
        assert!(resolve(&dir, "seed").unwrap().ends_with("app/agents/seed.md"));
        for bad in ["../outside.md", "/etc/passwd", "agents/../../outside.md", "link"] {
            let err = resolve(&dir, bad).unwrap_err();
            assert!(err.message.contains("outside the working directory"), "{bad}: {err}");
            assert!(err.permanent, "{bad}");
        }
        std::fs::write(dir.join(".env"), "SECRET=1").unwrap();
        std::os::unix::fs::symlink(dir.join(".env"), dir.join("agents/env.md")).unwrap();
        for bad in ["./.env", ".env/", "agents/a", "agents/a.txt", "env"] {
            let err = resolve(&dir, bad).unwrap_err();
            assert!(err.message.contains(".md"), "{bad}: {err}");
            assert!(err.permanent, "{bad}");
        }
        let err = resolve(&dir, "missing").unwrap_err();
        assert!(err.message.contains("not found") && !err.permanent, "{err}");
        assert!(resolve(&dir, " ").unwrap_err().permanent);
    }
}
