//! Every setting of the service and its one default: one clap struct whose flags also
//! read the environment (the command tree that embeds it is in `cli`).
//!
//! `.env` is loaded and the environment normalised (trimmed, empty = unset) by
//! [`prepare_environment`] before clap parses, so a bad value such as `PORT=abc` stops
//! start-up with clap's message, which names the variable (value names are the env names).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use crate::domain::{LlmMode, LlmProvider, LogFormat, SqliteSynchronous};
use crate::store::StoreConfig;
use crate::store::postgres::PgOptions;

/// The default of `CLAUDE_AGENT_TIMEOUT_SECONDS` (not a clap default: the seed's
/// `ACTION_AGENT_TIMEOUT_SECONDS` is the fallback when it is unset).
pub const DEFAULT_AGENT_TIMEOUT_SECONDS: f64 = 90.0;

/// Environment variables this program reads; used to trim them and treat empty as unset.
pub const ENV_VARS: &[&str] = &[
    "APP_DB_PATH",
    "DATABASE_URL",
    "HOST",
    "PORT",
    "APP_CONFIG_PATH",
    "INGRESS_SECRET",
    "CRON_SECRET",
    "ADMIN_SECRET",
    "DASHBOARD",
    "WEBHOOK_SECRET",
    "FIREFLIES_WEBHOOK_SECRET",
    "WORKER_POLL_INTERVAL",
    "WORKER_MAX_ATTEMPTS",
    "WORKER_CONCURRENCY",
    "WORKER_LEASE_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "RETENTION_DONE_DAYS",
    "RETENTION_ERROR_DAYS",
    "MAX_BODY_BYTES",
    "HEADER_READ_TIMEOUT_SECONDS",
    "BODY_READ_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "STORE_SENSITIVE_HEADERS",
    "SQLITE_SYNCHRONOUS",
    "DATABASE_POOL_SIZE",
    "DATABASE_STATEMENT_TIMEOUT_SECONDS",
    "DATABASE_CONNECT_TIMEOUT_SECONDS",
    "MAPPER_USE_AI",
    "MAPPER_AI_THRESHOLD",
    "API_BASE_URL",
    "LLM_MODE",
    "LLM_COMMAND",
    "LLM_SYSTEM_PROMPT",
    "LLM_PROVIDER",
    "LLM_MODEL",
    "LLM_TIMEOUT_SECONDS",
    "APP_COMMANDS_PATH",
    "ACTION_COMMAND_TIMEOUT_SECONDS",
    "ACTION_AGENT_TIMEOUT_SECONDS",
    "COMMAND_ENV_PASSTHROUGH",
    "HTTP_HANDLER_SECRET",
    "HTTP_HANDLER_TIMEOUT_SECONDS",
    "HTTP_HANDLER_ALLOW_PRIVATE",
    "CLAUDE_CLI",
    "CLAUDE_AGENT_MODEL",
    "CLAUDE_AGENT_MAX_TURNS",
    "CLAUDE_AGENT_PERMISSION_MODE",
    "CLAUDE_AGENT_DEFAULT_TOOLS",
    "CLAUDE_AGENT_TIMEOUT_SECONDS",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LOG_FORMAT",
    "PUBLIC_BASE_URL",
    "GITHUB_WEBHOOK_SECRET",
    "STRIPE_WEBHOOK_SECRET",
    "SLACK_SIGNING_SECRET",
    "SHOPIFY_WEBHOOK_SECRET",
    "STANDARD_WEBHOOKS_SECRET",
    "LINEAR_WEBHOOK_SECRET",
    "TWILIO_AUTH_TOKEN",
    "DISCORD_PUBLIC_KEY",
];

/// Loads `.env` (real environment variables win) and trims every known variable,
/// removing the empty ones so that "empty means unset".
pub fn prepare_environment() {
    // A missing .env is normal; a malformed one is reported but not fatal, like the seed.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: could not load .env: {e}");
    }
    for name in ENV_VARS.iter().copied().chain(["RUST_LOG"]) {
        if let Ok(value) = std::env::var(name) {
            let trimmed = value.trim();
            // SAFETY: called from `main` before the runtime or any other thread starts.
            unsafe {
                if trimmed.is_empty() {
                    std::env::remove_var(name);
                } else if trimmed.len() != value.len() {
                    std::env::set_var(name, trimmed);
                }
            }
        }
    }
}

/// Settings shared by all commands; every flag also reads the named environment variable.
#[derive(Clone, Args)]
pub struct Settings {
    /// SQLite database file (used when DATABASE_URL is unset); parent dirs are created.
    #[arg(
        long = "db",
        env = "APP_DB_PATH",
        value_name = "APP_DB_PATH",
        default_value = "data/events.sqlite3",
        global = true
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
    #[arg(long, env = "HOST", value_name = "HOST", default_value = "0.0.0.0", global = true)]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 8080, global = true)]
    pub port: u16,
    /// JSON config file applied at start-up.
    #[arg(
        long = "config",
        env = "APP_CONFIG_PATH",
        value_name = "APP_CONFIG_PATH",
        global = true
    )]
    pub config_path: Option<PathBuf>,

    /// Required in X-Ingress-Secret on /webhook and /cron/enqueue when set.
    #[arg(
        long,
        env = "INGRESS_SECRET",
        value_name = "INGRESS_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub ingress_secret: Option<String>,
    /// Required in X-Cron-Secret on /cron/enqueue when set.
    #[arg(
        long,
        env = "CRON_SECRET",
        value_name = "CRON_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub cron_secret: Option<String>,
    /// Required in X-Admin-Secret on /events/{id} when set.
    #[arg(
        long,
        env = "ADMIN_SECRET",
        value_name = "ADMIN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub admin_secret: Option<String>,
    /// Serve the operator dashboard at /ui (0 disables it).
    #[arg(long, env = "DASHBOARD", value_name = "DASHBOARD", default_value = "1", value_parser = parse_flag, global = true)]
    pub dashboard: bool,
    /// HMAC-SHA256 key for X-Signature; when set, every webhook must be signed.
    #[arg(
        long,
        env = "WEBHOOK_SECRET",
        value_name = "WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<String>,
    /// HMAC-SHA256 key for X-Hub-Signature on requests that carry it.
    #[arg(
        long,
        env = "FIREFLIES_WEBHOOK_SECRET",
        value_name = "FIREFLIES_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub fireflies_webhook_secret: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", value_name = "MAX_BODY_BYTES", default_value_t = 2_097_152, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub max_body_bytes: u64,
    /// Seconds a client has to send its request headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", value_name = "HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10.0, value_parser = positive_seconds, global = true)]
    pub header_read_timeout: f64,
    /// Seconds a client has to send its whole request body (a stalled upload is closed).
    #[arg(long, env = "BODY_READ_TIMEOUT_SECONDS", value_name = "BODY_READ_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = positive_seconds, global = true)]
    pub body_read_timeout: f64,
    /// Most client connections open at once; further ones wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_connections: u32,
    /// Store Authorization, Cookie, Proxy-Authorization and Set-Cookie as received instead of "[redacted]" (0 or 1).
    #[arg(long, env = "STORE_SENSITIVE_HEADERS", value_name = "STORE_SENSITIVE_HEADERS", default_value = "0", value_parser = parse_flag, global = true)]
    pub store_sensitive_headers: bool,

    /// Idle poll interval in seconds (new events wake workers at once; this is the fallback).
    #[arg(long = "poll-interval", env = "WORKER_POLL_INTERVAL", value_name = "WORKER_POLL_INTERVAL", default_value_t = 1.0, value_parser = positive_seconds, global = true)]
    pub poll_interval: f64,
    /// Failed attempts before an event is marked `error`.
    #[arg(long = "max-attempts", env = "WORKER_MAX_ATTEMPTS", value_name = "WORKER_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub max_attempts: u32,
    /// Events handled at once per process.
    #[arg(long = "concurrency", env = "WORKER_CONCURRENCY", value_name = "WORKER_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub concurrency: u32,
    /// Seconds a claim holds before another worker may reclaim it (renewed while a handler runs).
    #[arg(long = "lease-seconds", env = "WORKER_LEASE_SECONDS", value_name = "WORKER_LEASE_SECONDS", default_value_t = 60.0, value_parser = positive_seconds, global = true)]
    pub lease_seconds: f64,
    /// Seconds in-flight events get to finish on SIGTERM before their claims are released.
    #[arg(long = "shutdown-grace", env = "SHUTDOWN_GRACE_SECONDS", value_name = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20.0, value_parser = non_negative_seconds, global = true)]
    pub shutdown_grace: f64,

    /// Days `done` events are kept before `serve` deletes them (0 keeps them forever).
    #[arg(
        long,
        env = "RETENTION_DONE_DAYS",
        value_name = "RETENTION_DONE_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub retention_done_days: u32,
    /// Days `error` and `cancelled` events are kept before `serve` deletes them (0 keeps them forever).
    #[arg(
        long,
        env = "RETENTION_ERROR_DAYS",
        value_name = "RETENTION_ERROR_DAYS",
        default_value_t = 90,
        global = true
    )]
    pub retention_error_days: u32,

    /// SQLite `synchronous` pragma: `normal` survives a process crash, `full` also a power loss.
    #[arg(
        long,
        env = "SQLITE_SYNCHRONOUS",
        value_name = "SQLITE_SYNCHRONOUS",
        default_value = "normal",
        global = true
    )]
    pub sqlite_synchronous: SqliteSynchronous,
    /// PostgreSQL connection pool size.
    #[arg(long, env = "DATABASE_POOL_SIZE", value_name = "DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub database_pool_size: u32,
    /// PostgreSQL statement timeout in seconds.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_SECONDS", value_name = "DATABASE_STATEMENT_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = positive_seconds, global = true)]
    pub database_statement_timeout: f64,
    /// Seconds to keep retrying the first database connection at start-up.
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT_SECONDS", value_name = "DATABASE_CONNECT_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = non_negative_seconds, global = true)]
    pub database_connect_timeout: f64,

    /// Use an LLM to classify payloads whose heuristic confidence is low (0 or 1).
    #[arg(long, env = "MAPPER_USE_AI", value_name = "MAPPER_USE_AI", default_value = "0", value_parser = parse_flag, global = true)]
    pub mapper_use_ai: bool,
    /// Confidence below which the AI classifier is asked.
    #[arg(long, env = "MAPPER_AI_THRESHOLD", value_name = "MAPPER_AI_THRESHOLD", default_value_t = 0.65, value_parser = unit_interval, global = true)]
    pub mapper_ai_threshold: f64,

    /// Generic runner for events with no route: noop, echo, command or claude.
    #[arg(
        long,
        env = "LLM_MODE",
        value_name = "LLM_MODE",
        default_value = "noop",
        ignore_case = true,
        global = true
    )]
    pub llm_mode: LlmMode,
    /// Command line for LLM_MODE=command (split like a shell line, no shell).
    #[arg(long, env = "LLM_COMMAND", value_name = "LLM_COMMAND", global = true)]
    pub llm_command: Option<String>,
    /// System prompt for the generic runner and the `llm` handler.
    #[arg(long, env = "LLM_SYSTEM_PROMPT", value_name = "LLM_SYSTEM_PROMPT", global = true)]
    pub llm_system_prompt: Option<String>,
    /// Back-end of the `llm` handler and the AI classifier: claude-cli, anthropic or openai.
    #[arg(
        long,
        env = "LLM_PROVIDER",
        value_name = "LLM_PROVIDER",
        default_value = "claude-cli",
        global = true
    )]
    pub llm_provider: LlmProvider,
    /// Model of the `llm` handler (the back-end's default when unset).
    #[arg(long, env = "LLM_MODEL", value_name = "LLM_MODEL", global = true)]
    pub llm_model: Option<String>,
    /// Seconds one LLM request (or `claude-cli` run of the `llm` handler) may take.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", value_name = "LLM_TIMEOUT_SECONDS", default_value_t = 60.0, value_parser = positive_seconds, global = true)]
    pub llm_timeout: f64,
    /// Anthropic API key for LLM_PROVIDER=anthropic (also passed to the Claude Code CLI).
    #[arg(
        long,
        env = "ANTHROPIC_API_KEY",
        value_name = "ANTHROPIC_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub anthropic_api_key: Option<String>,
    /// Base URL of the Anthropic API.
    #[arg(long, env = "ANTHROPIC_BASE_URL", value_name = "ANTHROPIC_BASE_URL", default_value = "https://api.anthropic.com", value_parser = http_url, global = true)]
    pub anthropic_base_url: String,
    /// OpenAI (or compatible) API key for LLM_PROVIDER=openai.
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        value_name = "OPENAI_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub openai_api_key: Option<String>,
    /// Base URL of an OpenAI-compatible API (up to and including `/v1`).
    #[arg(long, env = "OPENAI_BASE_URL", value_name = "OPENAI_BASE_URL", default_value = "https://api.openai.com/v1", value_parser = http_url, global = true)]
    pub openai_base_url: String,
    /// The Claude Code CLI binary (name on PATH or a path).
    #[arg(
        long,
        env = "CLAUDE_CLI",
        value_name = "CLAUDE_CLI",
        default_value = "claude",
        global = true
    )]
    pub claude_cli: String,
    /// Model for `agent` runs whose agent file names none.
    #[arg(long, env = "CLAUDE_AGENT_MODEL", value_name = "CLAUDE_AGENT_MODEL", global = true)]
    pub claude_agent_model: Option<String>,
    /// `--max-turns` of the Claude Code CLI.
    #[arg(long, env = "CLAUDE_AGENT_MAX_TURNS", value_name = "CLAUDE_AGENT_MAX_TURNS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub claude_agent_max_turns: u32,
    /// `--permission-mode` of the Claude Code CLI.
    #[arg(long, env = "CLAUDE_AGENT_PERMISSION_MODE", value_name = "CLAUDE_AGENT_PERMISSION_MODE", default_value = "dontAsk", value_parser = ["default", "acceptEdits", "bypassPermissions", "plan", "dontAsk"], global = true)]
    pub claude_agent_permission_mode: String,
    /// Tools of an agent whose file lists none: a comma-separated list, or `all` (default: none).
    #[arg(
        long,
        env = "CLAUDE_AGENT_DEFAULT_TOOLS",
        value_name = "CLAUDE_AGENT_DEFAULT_TOOLS",
        global = true
    )]
    pub claude_agent_default_tools: Option<String>,
    /// Seconds an `agent` run may take before its process group is killed (default 90).
    #[arg(long, env = "CLAUDE_AGENT_TIMEOUT_SECONDS", value_name = "CLAUDE_AGENT_TIMEOUT_SECONDS", value_parser = positive_seconds, global = true)]
    pub claude_agent_timeout: Option<f64>,
    /// Fallback for CLAUDE_AGENT_TIMEOUT_SECONDS (the seed's name).
    #[arg(long, env = "ACTION_AGENT_TIMEOUT_SECONDS", value_name = "ACTION_AGENT_TIMEOUT_SECONDS", value_parser = positive_seconds, global = true)]
    pub action_agent_timeout: Option<f64>,
    /// whitelist of commands for the `command` handler.
    #[arg(
        long,
        env = "APP_COMMANDS_PATH",
        value_name = "APP_COMMANDS_PATH",
        default_value = "commands.json",
        global = true
    )]
    pub commands_path: PathBuf,
    /// Seconds a `command` handler may run before its process group is killed.
    #[arg(long, env = "ACTION_COMMAND_TIMEOUT_SECONDS", value_name = "ACTION_COMMAND_TIMEOUT_SECONDS", default_value_t = 90.0, value_parser = positive_seconds, global = true)]
    pub command_timeout: f64,
    /// Key signing the `http` handler's requests (Standard Webhooks; `whsec_<base64>` or text).
    #[arg(
        long,
        env = "HTTP_HANDLER_SECRET",
        value_name = "HTTP_HANDLER_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub http_handler_secret: Option<String>,
    /// Seconds an `http` handler request may take.
    #[arg(long, env = "HTTP_HANDLER_TIMEOUT_SECONDS", value_name = "HTTP_HANDLER_TIMEOUT_SECONDS", default_value_t = 30.0, value_parser = positive_seconds, global = true)]
    pub http_handler_timeout: f64,
    /// Let the `http` handler reach loopback, private and link-local addresses (0 or 1).
    #[arg(long, env = "HTTP_HANDLER_ALLOW_PRIVATE", value_name = "HTTP_HANDLER_ALLOW_PRIVATE", default_value = "0", value_parser = parse_flag, global = true)]
    pub http_handler_allow_private: bool,
    /// Comma-separated variables (or `PREFIX_*`) handler children see beyond the allowlist.
    #[arg(
        long,
        env = "COMMAND_ENV_PASSTHROUGH",
        value_name = "COMMAND_ENV_PASSTHROUGH",
        value_delimiter = ',',
        global = true
    )]
    pub command_env_passthrough: Vec<String>,

    /// Log format: text or json.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Provider sources: the environment shortcuts of CONTRACT §8.
    #[command(flatten)]
    pub providers: ProviderSettings,
}

/// The provider shortcuts (each a comma-separated secret list) and `PUBLIC_BASE_URL`.
#[derive(Clone, Args)]
pub struct ProviderSettings {
    /// The public URL of this service as providers call it (Twilio signs the full URL).
    #[arg(long, env = "PUBLIC_BASE_URL", value_name = "PUBLIC_BASE_URL", value_parser = http_url, global = true)]
    pub public_base_url: Option<String>,
    /// Secrets verifying /webhook/github (X-Hub-Signature-256).
    #[arg(
        long,
        env = "GITHUB_WEBHOOK_SECRET",
        value_name = "GITHUB_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub github_webhook_secret: Vec<String>,
    /// Secrets verifying /webhook/stripe (Stripe-Signature).
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        value_name = "STRIPE_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub stripe_webhook_secret: Vec<String>,
    /// Signing secrets verifying /webhook/slack (X-Slack-Signature).
    #[arg(
        long,
        env = "SLACK_SIGNING_SECRET",
        value_name = "SLACK_SIGNING_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub slack_signing_secret: Vec<String>,
    /// Secrets verifying /webhook/shopify (X-Shopify-Hmac-Sha256).
    #[arg(
        long,
        env = "SHOPIFY_WEBHOOK_SECRET",
        value_name = "SHOPIFY_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub shopify_webhook_secret: Vec<String>,
    /// `whsec_` secrets verifying /webhook/standard-webhooks (Standard Webhooks / Svix).
    #[arg(
        long,
        env = "STANDARD_WEBHOOKS_SECRET",
        value_name = "STANDARD_WEBHOOKS_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub standard_webhooks_secret: Vec<String>,
    /// Secrets verifying /webhook/linear (Linear-Signature).
    #[arg(
        long,
        env = "LINEAR_WEBHOOK_SECRET",
        value_name = "LINEAR_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub linear_webhook_secret: Vec<String>,
    /// Auth tokens verifying /webhook/twilio (X-Twilio-Signature; needs PUBLIC_BASE_URL).
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        value_name = "TWILIO_AUTH_TOKEN",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub twilio_auth_token: Vec<String>,
    /// Hex Ed25519 public keys verifying /webhook/discord (X-Signature-Ed25519).
    #[arg(
        long,
        env = "DISCORD_PUBLIC_KEY",
        value_name = "DISCORD_PUBLIC_KEY",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub discord_public_key: Vec<String>,
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
        commands_path,
        command_timeout,
        http_handler_timeout,
        http_handler_allow_private,
        command_env_passthrough,
        log_format,
        providers
    ],
});

crate::redacting_debug!(ProviderSettings {
    secret: [
        github_webhook_secret,
        stripe_webhook_secret,
        slack_signing_secret,
        shopify_webhook_secret,
        standard_webhooks_secret,
        linear_webhook_secret,
        twilio_auth_token,
        discord_public_key
    ],
    plain: [public_base_url],
});

impl ProviderSettings {
    /// `(scheme, secrets)` of every shortcut, in CONTRACT §8's order.
    pub fn shortcuts(&self) -> [(&'static str, &[String]); 8] {
        [
            ("github", &self.github_webhook_secret),
            ("stripe", &self.stripe_webhook_secret),
            ("slack", &self.slack_signing_secret),
            ("shopify", &self.shopify_webhook_secret),
            ("standard-webhooks", &self.standard_webhooks_secret),
            ("linear", &self.linear_webhook_secret),
            ("twilio", &self.twilio_auth_token),
            ("discord", &self.discord_public_key),
        ]
    }
}

impl Settings {
    /// Settings with every default, for tests and embedding.
    pub fn defaults() -> Settings {
        /// A command line holding only the settings (the command tree lives in `cli`).
        #[derive(Parser)]
        struct SettingsOnly {
            #[command(flatten)]
            settings: Settings,
        }
        match SettingsOnly::try_parse_from(["switchyard"]) {
            Ok(parsed) => parsed.settings,
            // The defaults are constants of this file; failing here is a programming error.
            Err(e) => panic!("default settings do not parse: {e}"),
        }
    }

    /// These settings with empty or blank optional strings (e.g. `--ingress-secret ''`)
    /// turned into "unset", as the environment's are: an empty secret must not mean
    /// "authenticate requests that send an empty header".
    pub fn normalized(mut self) -> Settings {
        for value in [
            &mut self.database_url,
            &mut self.ingress_secret,
            &mut self.cron_secret,
            &mut self.admin_secret,
            &mut self.webhook_secret,
            &mut self.fireflies_webhook_secret,
            &mut self.llm_command,
            &mut self.llm_system_prompt,
            &mut self.llm_model,
            &mut self.anthropic_api_key,
            &mut self.openai_api_key,
            &mut self.claude_agent_model,
            &mut self.http_handler_secret,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        if self.config_path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            self.config_path = None;
        }
        self
    }

    /// The idle poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.poll_interval)
    }

    /// Where and how to open the store.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            database_url: self.database_url.clone(),
            sqlite_path: self.db_path.clone(),
            sqlite_synchronous: self.sqlite_synchronous,
            postgres: PgOptions {
                pool_size: self.database_pool_size.max(1),
                statement_timeout: Duration::from_secs_f64(self.database_statement_timeout),
                connect_timeout: Duration::from_secs_f64(self.database_connect_timeout),
                existing_only: false,
            },
        }
    }

    /// How long an `agent` run may take: `CLAUDE_AGENT_TIMEOUT_SECONDS`, else the seed's
    /// `ACTION_AGENT_TIMEOUT_SECONDS`, else [`DEFAULT_AGENT_TIMEOUT_SECONDS`].
    pub fn agent_timeout(&self) -> Duration {
        let seconds = self.claude_agent_timeout.or(self.action_agent_timeout);
        Duration::from_secs_f64(seconds.unwrap_or(DEFAULT_AGENT_TIMEOUT_SECONDS))
    }

    /// How long a claim holds.
    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.lease_seconds)
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e7 => Ok(v),
        _ => Err(format!("expected a positive number of seconds, got '{s}'")),
    }
}

fn http_url(s: &str) -> Result<String, String> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(s.trim_end_matches('/').to_owned()),
        _ => Err(format!("expected an http:// or https:// URL, got '{s}'")),
    }
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e7).contains(&v) => Ok(v),
        _ => Err(format!("expected a number of seconds >= 0, got '{s}'")),
    }
}

fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number between 0 and 1, got '{s}'")),
    }
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 0 or 1, got '{s}'")),
    }
}

#[cfg(test)]
mod debug_tests {
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn debug_output_redacts_every_secret() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "--ingress-secret",
            "SECRET-ingress",
            "--admin-secret",
            "SECRET-admin",
            "--database-url",
            "postgres://u:SECRET-pw@db/x",
            "--github-webhook-secret",
            "SECRET-gh1,SECRET-gh2",
            "--anthropic-api-key",
            "SECRET-key",
            "serve",
        ])
        .unwrap();
        let text = format!("{cli:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("ingress_secret: Some([redacted])"), "{text}");
        assert!(text.contains("github_webhook_secret: [redacted; 2]"), "{text}");
        assert!(text.contains("max_body_bytes: 2097152"), "{text}");
    }
}
