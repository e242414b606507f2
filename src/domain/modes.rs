//! What runs an event: handler modes, the generic runner's mode, LLM back-ends.

text_enum! {
    /// How a routed action is handled (CONTRACT §5): one file per mode under `handlers/`.
    pub enum HandlerMode("handler mode") {
        /// Do nothing; the output names the action.
        Noop = "noop",
        /// Run a `commands.json` entry.
        Command = "command",
        /// Run a Claude Code sub-agent file.
        Agent = "agent",
        /// One structured call to an LLM back-end.
        Llm = "llm",
        /// POST the event to a URL (Standard Webhooks signed).
        Http = "http",
    }
}

text_enum! {
    /// Which generic runner handles events with no route (`LLM_MODE`).
    #[derive(Default)]
    pub enum LlmMode("LLM_MODE") {
        /// Do nothing: `{"note":"no mapping"}`.
        #[default]
        Noop = "noop",
        /// Return what would be sent, without calling anything.
        Echo = "echo",
        /// Run `LLM_COMMAND`.
        Command = "command",
        /// The Claude Code CLI (`CLAUDE_CLI`).
        Claude = "claude",
    }
}

text_enum! {
    /// The back-end of the `llm` handler and the AI classifier (`LLM_PROVIDER`).
    #[derive(Default)]
    pub enum LlmProvider("LLM provider") {
        /// The Claude Code CLI, without tools.
        #[default]
        ClaudeCli = "claude-cli",
        /// The Anthropic Messages API.
        Anthropic = "anthropic",
        /// An OpenAI-compatible chat completions API.
        Openai = "openai",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_only_their_spelling() {
        for m in HandlerMode::ALL {
            assert_eq!(m.as_str().parse::<HandlerMode>(), Ok(*m));
        }
        let e = "shell".parse::<HandlerMode>().unwrap_err().to_string();
        assert!(
            e.contains("'shell'") && e.contains("noop, command, agent, llm, http"),
            "{e}"
        );
        assert!("NOOP".parse::<HandlerMode>().is_err());
        assert_eq!(serde_json::to_string(&HandlerMode::Http).unwrap(), "\"http\"");
        assert!(serde_json::from_str::<HandlerMode>("\"bogus\"").is_err());
        assert_eq!("claude-cli".parse(), Ok(LlmProvider::ClaudeCli));
        assert!("gpt".parse::<LlmProvider>().is_err());
    }
}
