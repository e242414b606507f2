//! The clap struct of every service setting: flattened into `serve`, `http` and `worker`;
//! the other commands build it from the environment alone (see `Settings::from_environment`).

use std::path::PathBuf;

use clap::Args;

use super::parse::{http_url, non_negative_seconds, parse_flag, positive_seconds, positive_usd, unit_interval};
use super::providers::ProviderSettings;
use crate::domain::{LlmMode, LlmProvider, LogFormat, SqliteSynchronous};

/// Settings shared by all commands; every flag also reads the named environment variable.
#[derive(Clone, Args)]
pub struct Settings {
    /// SQLite database file (used when DATABASE_URL is unset); parent dirs are created.
    #[arg(
        long = "db",
        env = "APP_DB_PATH",
        value_name = "APP_DB_PATH",
        default_value = "data/events.sqlite3"
    )]
    pub db_path: PathBuf,
    /// A postgres:// URL selects PostgreSQL instead of SQLite.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "HOST", value_name = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// JSON config file applied at start-up.
    #[arg(long = "config", env = "APP_CONFIG_PATH", value_name = "APP_CONFIG_PATH")]
    pub config_path: Option<PathBuf>,

    /// Required in X-Ingress-Secret on /webhook and /cron/enqueue when set.
    #[arg(long, env = "INGRESS_SECRET", value_name = "INGRESS_SECRET", hide_env_values = true)]
    pub ingress_secret: Option<String>,
    /// Required in X-Cron-Secret on /cron/enqueue when set.
    #[arg(long, env = "CRON_SECRET", value_name = "CRON_SECRET", hide_env_values = true)]
    pub cron_secret: Option<String>,
    /// Required in X-Admin-Secret on /events/{id} when set.
    #[arg(long, env = "ADMIN_SECRET", value_name = "ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,
    /// Whether to serve the operator dashboard at /ui: 1 (the default) or 0 (off).
    #[arg(long, env = "DASHBOARD", value_name = "0|1", default_value = "1", value_parser = parse_flag)]
    pub dashboard: bool,
    /// Host names (comma-separated, `*` for any) the operator API and /ui answer besides
    /// loopback while ADMIN_SECRET is unset (DNS rebinding).
    #[arg(long, env = "ALLOWED_HOSTS", value_name = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// HMAC-SHA256 key for X-Signature; when set, every webhook must be signed.
    #[arg(long, env = "WEBHOOK_SECRET", value_name = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// HMAC-SHA256 key for X-Hub-Signature on requests that carry it.
    #[arg(
        long,
        env = "FIREFLIES_WEBHOOK_SECRET",
        value_name = "FIREFLIES_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub fireflies_webhook_secret: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", value_name = "MAX_BODY_BYTES", default_value_t = 2_097_152, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
    /// Seconds a client has to send its request headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", value_name = "HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    pub header_read_timeout: f64,
    /// Seconds a client has to send its whole request body (a stalled upload is closed).
    #[arg(long, env = "BODY_READ_TIMEOUT_SECONDS", value_name = "BODY_READ_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub body_read_timeout: f64,
    /// Most client connections open at once; further ones wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Store Authorization, Cookie, Proxy-Authorization and Set-Cookie as received instead of "[redacted]" (0 or 1).
    // The text is `--help`'s, where an escaped bracket would show: not a link for rustdoc.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, env = "STORE_SENSITIVE_HEADERS", value_name = "STORE_SENSITIVE_HEADERS", default_value = "0", value_parser = parse_flag)]
    pub store_sensitive_headers: bool,

    /// Idle poll interval in seconds (new events wake workers at once; this is the fallback).
    #[arg(long = "poll-interval", env = "WORKER_POLL_INTERVAL", value_name = "WORKER_POLL_INTERVAL", default_value_t = 1.0, value_parser = positive_seconds)]
    pub poll_interval: f64,
    /// Failed attempts before an event is marked `error`.
    #[arg(long = "max-attempts", env = "WORKER_MAX_ATTEMPTS", value_name = "WORKER_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,
    /// Handlers running at once per process (each running action of a fan-out event takes one).
    #[arg(long = "concurrency", env = "WORKER_CONCURRENCY", value_name = "WORKER_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Seconds a claim holds before another worker may reclaim it (renewed while a handler runs).
    #[arg(long = "lease-seconds", env = "WORKER_LEASE_SECONDS", value_name = "WORKER_LEASE_SECONDS", default_value_t = 60.0, value_parser = positive_seconds)]
    pub lease_seconds: f64,
    /// Seconds in-flight events get to finish on SIGTERM before their claims are released.
    #[arg(long = "shutdown-grace", env = "SHUTDOWN_GRACE_SECONDS", value_name = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20.0, value_parser = non_negative_seconds)]
    pub shutdown_grace: f64,

    /// Days `done`, `skipped` and `superseded` events are kept before `serve` deletes them (0 keeps them forever).
    #[arg(
        long,
        env = "RETENTION_DONE_DAYS",
        value_name = "RETENTION_DONE_DAYS",
        default_value_t = 30
    )]
    pub retention_done_days: u32,
    /// Days `error` and `cancelled` events are kept before `serve` deletes them (0 keeps them forever).
    #[arg(
        long,
        env = "RETENTION_ERROR_DAYS",
        value_name = "RETENTION_ERROR_DAYS",
        default_value_t = 90
    )]
    pub retention_error_days: u32,

    /// SQLite `synchronous` pragma: `normal` survives a process crash, `full` also a power loss.
    #[arg(
        long,
        env = "SQLITE_SYNCHRONOUS",
        value_name = "SQLITE_SYNCHRONOUS",
        default_value = "normal"
    )]
    pub sqlite_synchronous: SqliteSynchronous,
    /// PostgreSQL connection pool size.
    #[arg(long, env = "DATABASE_POOL_SIZE", value_name = "DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    /// PostgreSQL statement timeout in seconds.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_SECONDS", value_name = "DATABASE_STATEMENT_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub database_statement_timeout: f64,
    /// Seconds to keep retrying the first database connection at start-up.
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT_SECONDS", value_name = "DATABASE_CONNECT_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = non_negative_seconds)]
    pub database_connect_timeout: f64,

    /// Use an LLM to classify payloads whose heuristic confidence is low (0 or 1).
    #[arg(long, env = "MAPPER_USE_AI", value_name = "MAPPER_USE_AI", default_value = "0", value_parser = parse_flag)]
    pub mapper_use_ai: bool,
    /// Confidence below which the AI classifier is asked.
    #[arg(long, env = "MAPPER_AI_THRESHOLD", value_name = "MAPPER_AI_THRESHOLD", default_value_t = 0.65, value_parser = unit_interval)]
    pub mapper_ai_threshold: f64,

    /// Generic runner for events with no route: noop, echo, command or claude.
    #[arg(
        long,
        env = "LLM_MODE",
        value_name = "LLM_MODE",
        default_value = LlmMode::Noop.as_str(),
        ignore_case = true
    )]
    pub llm_mode: LlmMode,
    /// Command line for LLM_MODE=command (split like a shell line, no shell).
    #[arg(long, env = "LLM_COMMAND", value_name = "LLM_COMMAND")]
    pub llm_command: Option<String>,
    /// System prompt for the generic runner and the `llm` handler.
    #[arg(long, env = "LLM_SYSTEM_PROMPT", value_name = "LLM_SYSTEM_PROMPT")]
    pub llm_system_prompt: Option<String>,
    /// Back-end of the `llm` handler and the AI classifier: claude-cli, anthropic or openai.
    #[arg(
        long,
        env = "LLM_PROVIDER",
        value_name = "LLM_PROVIDER",
        default_value = LlmProvider::ClaudeCli.as_str()
    )]
    pub llm_provider: LlmProvider,
    /// Model of the `llm` handler (the back-end's default when unset).
    #[arg(long, env = "LLM_MODEL", value_name = "LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Seconds one LLM request (or `claude-cli` run of the `llm` handler) may take.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", value_name = "LLM_TIMEOUT_SECONDS", default_value_t = 60.0, value_parser = positive_seconds)]
    pub llm_timeout: f64,
    /// Anthropic API key for LLM_PROVIDER=anthropic (also passed to the Claude Code CLI).
    #[arg(
        long,
        env = "ANTHROPIC_API_KEY",
        value_name = "ANTHROPIC_API_KEY",
        hide_env_values = true
    )]
    pub anthropic_api_key: Option<String>,
    /// Base URL of the Anthropic API.
    #[arg(long, env = "ANTHROPIC_BASE_URL", value_name = "ANTHROPIC_BASE_URL", default_value = "https://api.anthropic.com", value_parser = http_url)]
    pub anthropic_base_url: String,
    /// OpenAI (or compatible) API key for LLM_PROVIDER=openai.
    #[arg(long, env = "OPENAI_API_KEY", value_name = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Base URL of an OpenAI-compatible API (up to and including `/v1`).
    #[arg(long, env = "OPENAI_BASE_URL", value_name = "OPENAI_BASE_URL", default_value = "https://api.openai.com/v1", value_parser = http_url)]
    pub openai_base_url: String,
    /// The Claude Code CLI binary (name on PATH or a path).
    #[arg(long, env = "CLAUDE_CLI", value_name = "CLAUDE_CLI", default_value = "claude")]
    pub claude_cli: String,
    /// Model for `agent` runs whose agent file names none.
    #[arg(long, env = "CLAUDE_AGENT_MODEL", value_name = "CLAUDE_AGENT_MODEL")]
    pub claude_agent_model: Option<String>,
    /// `--max-turns` of the Claude Code CLI.
    #[arg(long, env = "CLAUDE_AGENT_MAX_TURNS", value_name = "CLAUDE_AGENT_MAX_TURNS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub claude_agent_max_turns: u32,
    /// `--permission-mode` of the Claude Code CLI.
    #[arg(long, env = "CLAUDE_AGENT_PERMISSION_MODE", value_name = "CLAUDE_AGENT_PERMISSION_MODE", default_value = "dontAsk", value_parser = ["default", "acceptEdits", "bypassPermissions", "plan", "dontAsk"])]
    pub claude_agent_permission_mode: String,
    /// Tools of an agent whose file lists none: a comma-separated list, or `all` (default: none).
    #[arg(long, env = "CLAUDE_AGENT_DEFAULT_TOOLS", value_name = "CLAUDE_AGENT_DEFAULT_TOOLS")]
    pub claude_agent_default_tools: Option<String>,
    /// Seconds an `agent` run may take before its process group is killed (default 90).
    #[arg(long, env = "CLAUDE_AGENT_TIMEOUT_SECONDS", value_name = "CLAUDE_AGENT_TIMEOUT_SECONDS", value_parser = positive_seconds)]
    pub claude_agent_timeout: Option<f64>,
    /// Fallback for CLAUDE_AGENT_TIMEOUT_SECONDS (the prototype's name).
    #[arg(long, env = "ACTION_AGENT_TIMEOUT_SECONDS", value_name = "ACTION_AGENT_TIMEOUT_SECONDS", value_parser = positive_seconds)]
    pub action_agent_timeout: Option<f64>,
    /// US dollars all agent and llm runs may spend per UTC day; over it new runs are held.
    #[arg(long, env = "LLM_DAILY_BUDGET_USD", value_name = "LLM_DAILY_BUDGET_USD", value_parser = positive_usd)]
    pub llm_daily_budget: Option<f64>,
    /// US dollars all agent and llm runs may spend per UTC month; over it new runs are held.
    #[arg(long, env = "LLM_MONTHLY_BUDGET_USD", value_name = "LLM_MONTHLY_BUDGET_USD", value_parser = positive_usd)]
    pub llm_monthly_budget: Option<f64>,
    /// Seconds a run held by a budget waits before the budget is looked at again.
    #[arg(long, env = "LLM_BUDGET_RECHECK_SECONDS", value_name = "LLM_BUDGET_RECHECK_SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub llm_budget_recheck: f64,
    /// Largest stored agent transcript in bytes (head and tail kept).
    #[arg(long, env = "AGENT_TRANSCRIPT_MAX_BYTES", value_name = "AGENT_TRANSCRIPT_MAX_BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(1024..))]
    pub agent_transcript_max_bytes: u64,
    /// whitelist of commands for the `command` handler.
    #[arg(
        long,
        env = "APP_COMMANDS_PATH",
        value_name = "APP_COMMANDS_PATH",
        default_value = "commands.json"
    )]
    pub commands_path: PathBuf,
    /// Seconds a `command` handler may run before its process group is killed.
    #[arg(long, env = "ACTION_COMMAND_TIMEOUT_SECONDS", value_name = "ACTION_COMMAND_TIMEOUT_SECONDS", default_value_t = 90.0, value_parser = positive_seconds)]
    pub command_timeout: f64,
    /// Key signing the `http` handler's requests (Standard Webhooks; `whsec_<base64>` or text).
    #[arg(
        long,
        env = "HTTP_HANDLER_SECRET",
        value_name = "HTTP_HANDLER_SECRET",
        hide_env_values = true
    )]
    pub http_handler_secret: Option<String>,
    /// Seconds an `http` handler request may take.
    #[arg(long, env = "HTTP_HANDLER_TIMEOUT_SECONDS", value_name = "HTTP_HANDLER_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    pub http_handler_timeout: f64,
    /// Let the `http` handler reach loopback, private and link-local addresses (0 or 1).
    #[arg(long, env = "HTTP_HANDLER_ALLOW_PRIVATE", value_name = "HTTP_HANDLER_ALLOW_PRIVATE", default_value = "0", value_parser = parse_flag)]
    pub http_handler_allow_private: bool,
    /// Comma-separated variables (or `PREFIX_*`) handler children see beyond the allowlist.
    #[arg(
        long,
        env = "COMMAND_ENV_PASSTHROUGH",
        value_name = "COMMAND_ENV_PASSTHROUGH",
        value_delimiter = ','
    )]
    pub command_env_passthrough: Vec<String>,

    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Provider sources: the environment shortcuts of CONTRACT §8.
    #[command(flatten)]
    pub providers: ProviderSettings,
}

crate::redacting_debug!(Settings {
    secret: [
        database_url,
        ingress_secret,
        cron_secret,
        admin_secret,
        webhook_secret,
        fireflies_webhook_secret,
        anthropic_api_key,
        openai_api_key,
        http_handler_secret
    ],
    plain: [
        db_path,
        retention_done_days,
        retention_error_days,
        host,
        port,
        config_path,
        dashboard,
        allowed_hosts,
        max_body_bytes,
        header_read_timeout,
        body_read_timeout,
        max_connections,
        store_sensitive_headers,
        poll_interval,
        max_attempts,
        concurrency,
        lease_seconds,
        shutdown_grace,
        sqlite_synchronous,
        database_pool_size,
        database_statement_timeout,
        database_connect_timeout,
        mapper_use_ai,
        mapper_ai_threshold,
        llm_mode,
        llm_command,
        llm_system_prompt,
        llm_provider,
        llm_model,
        llm_timeout,
        anthropic_base_url,
        openai_base_url,
        claude_cli,
        claude_agent_model,
        claude_agent_max_turns,
        claude_agent_permission_mode,
        claude_agent_default_tools,
        claude_agent_timeout,
        action_agent_timeout,
        agent_transcript_max_bytes,
        llm_daily_budget,
        llm_monthly_budget,
        llm_budget_recheck,
        commands_path,
        command_timeout,
        http_handler_timeout,
        http_handler_allow_private,
        command_env_passthrough,
        log_format,
        providers
    ],
});
