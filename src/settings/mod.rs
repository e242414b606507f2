//! Every setting of the service and its one default: one clap struct whose flags also
//! read the environment. `serve`, `http` and `worker` take its flags; the operator
//! commands read it from the environment only, so their `--help` shows their own flags.
//!
//! `.env` is loaded and the environment normalised (trimmed, empty = unset) by
//! [`prepare_environment`] before clap parses, so a bad value such as `PORT=abc` stops
//! start-up with clap's message, which names the variable (value names are the env names).

mod parse;
mod providers;
mod service;
mod typos;

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

pub use providers::ProviderSettings;
pub use service::Settings;
pub use typos::{misspelled, warn_misspelled_environment};

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
    "ALLOWED_HOSTS",
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
    "AGENT_TRANSCRIPT_MAX_BYTES",
    "LLM_DAILY_BUDGET_USD",
    "LLM_MONTHLY_BUDGET_USD",
    "LLM_BUDGET_RECHECK_SECONDS",
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

/// Which path settings were left at their defaults (neither flag nor environment): the
/// prototype's files may stand in for those (`cli::prototype`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultedPaths {
    /// `APP_DB_PATH` / `--db`.
    pub db_path: bool,
    /// `APP_COMMANDS_PATH` / `--commands-path`.
    pub commands_path: bool,
}

impl DefaultedPaths {
    /// Reads the value sources of the matches `Settings` was parsed from.
    pub fn of(matches: &clap::ArgMatches) -> DefaultedPaths {
        let defaulted = |id: &str| matches!(matches.value_source(id), Some(ValueSource::DefaultValue) | None);
        DefaultedPaths {
            db_path: defaulted("db_path"),
            commands_path: defaulted("commands_path"),
        }
    }
}

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

impl Settings {
    /// Settings with every default, for tests and embedding.
    pub fn defaults() -> Settings {
        match Settings::from_environment() {
            Ok(parsed) => parsed.0,
            // The defaults are constants of this module; failing here is a programming error.
            Err(e) => panic!("default settings do not parse: {e}"),
        }
    }

    /// The settings as the environment alone gives them (what the operator commands use),
    /// and which path settings were left at their defaults. A bad value is clap's error
    /// naming the variable, as for `serve`.
    pub fn from_environment() -> Result<(Settings, DefaultedPaths), clap::Error> {
        /// A command line holding only the settings (the command tree lives in `cli`).
        #[derive(Parser)]
        struct SettingsOnly {
            #[command(flatten)]
            settings: Settings,
        }
        let matches = SettingsOnly::command().try_get_matches_from(["switchyard"])?;
        let parsed = SettingsOnly::from_arg_matches(&matches)?;
        Ok((parsed.settings, DefaultedPaths::of(&matches)))
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

    /// Every configured secret's value (the service's secrets, API keys, the provider
    /// shortcuts' signing secrets): what transcripts must never hold.
    pub fn secret_values(&self) -> Vec<String> {
        let single = [
            &self.ingress_secret,
            &self.cron_secret,
            &self.admin_secret,
            &self.webhook_secret,
            &self.fireflies_webhook_secret,
            &self.anthropic_api_key,
            &self.openai_api_key,
            &self.http_handler_secret,
        ];
        let mut values: Vec<String> = single.into_iter().flatten().cloned().collect();
        for (_, secrets) in self.providers.shortcuts() {
            values.extend(secrets.iter().cloned());
        }
        values.retain(|v| !v.trim().is_empty());
        values
    }

    /// Admission settings: the global LLM budgets and how held runs are looked at again.
    pub fn flow_config(&self) -> crate::flow::FlowConfig {
        let longest = self.agent_timeout().max(Duration::from_secs_f64(self.llm_timeout));
        crate::flow::FlowConfig {
            budgets: crate::flow::budget::GlobalBudgets {
                daily_usd: self.llm_daily_budget,
                monthly_usd: self.llm_monthly_budget,
            },
            recheck: Duration::from_secs_f64(self.llm_budget_recheck),
            // A run still in flight after its limit and a lease is a dead process's.
            in_flight_window: longest + self.lease(),
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

#[cfg(test)]
mod debug_tests {
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn debug_output_redacts_every_secret() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "serve",
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
        ])
        .unwrap();
        let text = format!("{cli:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("ingress_secret: Some([redacted])"), "{text}");
        assert!(text.contains("github_webhook_secret: [redacted; 2]"), "{text}");
        assert!(text.contains("max_body_bytes: 2097152"), "{text}");
    }
}
