//! switchyard: webhooks and cron into a durable queue, routed to handlers.
//!
//! The data path: [`http`] ingest (or a [`scheduler`] tick) → [`store`] enqueue →
//! [`worker`] claim → [`routing`] → [`handlers`] → [`store`] finish. `main.rs` only parses
//! the command line and calls [`cli::dispatch`].

pub mod cli;
pub mod config_file;
pub mod cron;
pub mod domain;
pub mod error;
pub mod escape;
pub mod flow;
pub mod handlers;
pub mod http;
pub mod ingest;
pub mod llm_metrics;
pub mod logging;
pub mod metrics;
pub mod retention;
pub mod routing;
pub mod scheduler;
pub mod settings;
pub mod spend_report;
pub mod store;
pub mod time;
pub mod views;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::routing::cache::RoutingCache;
use crate::settings::Settings;
use crate::store::Db;
use crate::worker::{PoolConfig, Processor};

/// Which parts of the service a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP server, workers and scheduler.
    Serve,
    /// HTTP server only.
    Http,
    /// Workers and scheduler.
    Worker,
}

/// The handler settings taken from the service settings.
pub fn handler_config(s: &Settings) -> handlers::HandlerConfig {
    handlers::HandlerConfig {
        commands_path: s.commands_path.clone(),
        command_timeout: Duration::from_secs_f64(s.command_timeout),
        max_output_bytes: handlers::DEFAULT_MAX_OUTPUT_BYTES,
        env_passthrough: s.command_env_passthrough.clone(),
        llm_mode: s.llm_mode,
        llm_command: s.llm_command.clone(),
        llm_system_prompt: s.llm_system_prompt.clone(),
        http: handlers::http::HttpHandlerConfig::new(
            s.http_handler_secret.clone(),
            Duration::from_secs_f64(s.http_handler_timeout),
            s.http_handler_allow_private,
        ),
        client: reqwest::Client::new(),
        claude: handlers::claude_cli::ClaudeConfig {
            program: s.claude_cli.clone(),
            model: s.claude_agent_model.clone(),
            max_turns: s.claude_agent_max_turns,
            permission_mode: s.claude_agent_permission_mode.clone(),
            default_tools: handlers::claude_cli::DefaultTools::parse(
                s.claude_agent_default_tools.as_deref().unwrap_or(""),
            ),
            timeout: s.agent_timeout(),
            work_dir: None,
        },
        llm: handlers::llm::LlmConfig {
            provider: s.llm_provider,
            model: s.llm_model.clone(),
            timeout: Duration::from_secs_f64(s.llm_timeout),
            anthropic_api_key: s.anthropic_api_key.clone(),
            anthropic_base_url: s.anthropic_base_url.clone(),
            openai_api_key: s.openai_api_key.clone(),
            openai_base_url: s.openai_base_url.clone(),
            prices: Default::default(),
        },
        secrets: s.secret_values().into(),
        transcript_max_bytes: usize::try_from(s.agent_transcript_max_bytes).unwrap_or(usize::MAX),
    }
}

/// The worker pool settings taken from the service settings.
pub fn pool_config(s: &Settings) -> PoolConfig {
    PoolConfig {
        concurrency: s.concurrency as usize,
        poll_interval: s.poll_interval(),
        lease: s.lease(),
        max_attempts: s.max_attempts,
        shutdown_grace: Duration::from_secs_f64(s.shutdown_grace),
    }
}

/// A processor for claimed events over `db`.
pub fn processor(db: &Db, s: &Settings) -> Arc<Processor> {
    let mut config = handler_config(s);
    if let Some(path) = &s.config_path {
        // `open_store` refused a bad file before any processor exists.
        match config_file::load_prices(path) {
            Ok(prices) => config.llm.prices = prices,
            Err(e) => tracing::warn!(error = %e, "cannot read the config file's prices; API runs get no cost"),
        }
    }
    let handlers = Arc::new(config);
    let ai = s.mapper_use_ai.then(|| routing::ai::AiClassifier {
        handlers: handlers.clone(),
        threshold: s.mapper_ai_threshold,
    });
    Arc::new(Processor::new(
        db.clone(),
        RoutingCache::new(db.clone()).with_ai(ai),
        handlers,
        s.max_attempts,
        s.flow_config(),
    ))
}

/// Opens the store and applies `APP_CONFIG_PATH` when set (refusing to start on a bad file).
pub async fn open_store(s: &Settings) -> anyhow::Result<Db> {
    let db = store::open(&s.store_config()).await.context("opening the database")?;
    if let Some(path) = &s.config_path {
        let applied = config_file::apply_file(&db, path).await?;
        tracing::info!(path = %path.display(), %applied, "applied config file");
    }
    Ok(db)
}

/// The sources of CONTRACT §8: the environment shortcuts plus the config file's
/// `"sources"`; a bad one stops start-up with a message naming it.
pub fn load_sources(s: &Settings) -> anyhow::Result<ingest::sources::Sources> {
    let configured = match &s.config_path {
        Some(path) => config_file::load_sources(path)?,
        None => Vec::new(),
    };
    let p = &s.providers;
    ingest::sources::Sources::build(&p.shortcuts(), configured, p.public_base_url.as_deref())
        .map_err(|e| anyhow::anyhow!("sources refused: {e}"))
}

/// The start-up line: what runs, on which database, and the settings that change behaviour
/// (secrets only as set or not).
fn log_start(s: &Settings, role: Role, backend: &str, sources: usize) {
    let set = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
    tracing::info!(
        role = ?role,
        backend,
        database = %store::location(&s.store_config()),
        concurrency = s.concurrency,
        max_attempts = s.max_attempts,
        ingress_secret = set(&s.ingress_secret),
        webhook_secret = set(&s.webhook_secret),
        cron_secret = set(&s.cron_secret),
        admin_secret = set(&s.admin_secret),
        sources,
        commands = %s.commands_path.display(),
        llm_mode = ?s.llm_mode,
        "switchyard starting"
    );
}

/// Runs the service in `role` until `shutdown` resolves; `listener` is required for
/// roles with an HTTP server (bind it to port 0 in tests).
pub async fn run(
    settings: Settings,
    role: Role,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = settings.normalized();
    let sources = Arc::new(load_sources(&settings)?);
    let db = open_store(&settings).await?;
    log_start(&settings, role, db.backend(), sources.iter().count());
    let settings = Arc::new(settings);
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let background = spawn_background(&db, &settings, role, &wake, &stop_rx);
    let server = match (role, listener) {
        (Role::Worker, _) => None,
        (_, None) => anyhow::bail!("an HTTP role needs a listener"),
        (_, Some(listener)) => {
            let state = http::AppState {
                db: db.clone(),
                settings: settings.clone(),
                wake: wake.clone(),
                sources,
            };
            Some(spawn_server(listener, state, stop_rx.clone())?)
        }
    };

    shutdown.await;
    tracing::info!("shutting down: no new requests; finishing in-flight events");
    let _ = stop_tx.send(true);
    // The server first (no new events), then the workers finish what they hold.
    if let Some(server) = server {
        let _ = server.await;
    }
    for task in background {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the tasks beside the HTTP server that `role` runs, in the order shutdown awaits
/// them: workers, scheduler, retention, queue gauges.
fn spawn_background(
    db: &Db,
    settings: &Arc<Settings>,
    role: Role,
    wake: &Arc<Notify>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if role != Role::Http {
        let pool = worker::run_pool(
            db.clone(),
            processor(db, settings),
            pool_config(settings),
            wake.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(pool));
        let clock = Arc::new(scheduler::clock::SystemClock);
        let task = scheduler::Scheduler::new(db.clone(), clock, scheduler::Options::default());
        tasks.push(tokio::spawn(task.run(stop.clone())));
    }
    // Retention runs beside the workers; the queue gauges beside the HTTP server (/metrics).
    if role == Role::Serve {
        tasks.push(tokio::spawn(retention::run(
            db.clone(),
            settings.retention_done_days,
            settings.retention_error_days,
            stop.clone(),
        )));
    }
    if role != Role::Worker {
        tasks.push(tokio::spawn(metrics::sample_loop(db.clone(), stop.clone())));
    }
    tasks
}

/// Starts the HTTP server on `listener`; it stops accepting once `stop` turns true.
fn spawn_server(
    listener: TcpListener,
    state: http::AppState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let settings = state.settings.clone();
    http::server::warn_unprotected(addr, &settings);
    tracing::info!(%addr, backend = state.db.backend(), database = %store::location(&settings.store_config()), "switchyard listening");
    for source in state.sources.iter() {
        tracing::info!(name = %escape::escaped(&source.name), path = %escape::escaped(&source.path()), scheme = source.scheme.name(),
            provider = %escape::escaped(&source.provider), secrets = source.secret_count(), "source verified by its provider's signature");
    }
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let limits = http::server::ConnLimits {
        header_read_timeout: Duration::from_secs_f64(settings.header_read_timeout),
        max_connections: settings.max_connections as usize,
    };
    Ok(tokio::spawn(http::server::serve(
        listener,
        http::router(state),
        limits,
        stopped,
    )))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_defaults_are_the_safe_ones() {
        let cfg = handler_config(&Settings::defaults());
        assert_eq!(cfg.claude.permission_mode, "dontAsk");
        assert_eq!(
            cfg.claude.default_tools,
            handlers::claude_cli::DefaultTools::List(Vec::new())
        );
        assert!(!cfg.http.allow_private);
        assert!(cfg.env_passthrough.is_empty());
    }
}
