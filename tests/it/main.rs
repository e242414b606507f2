//! Integration tests: the real binary on 127.0.0.1:0 with a fresh SQLite file (and, when
//! TEST_DATABASE_URL is set, a fresh PostgreSQL schema) per test.

mod agent;
mod api;
mod architecture;
mod claude_e2e;
mod cli;
mod cli_safety;
mod command;
mod helpers;
mod http_handler;
mod limits;
mod llm;
mod logs;
mod multi_instance;
mod ops_api;
mod ops_store;
mod pg_drops;
mod pg_locks;
mod readme;
mod redaction;
mod routing;
mod run_input;
mod scheduler;
mod seed_compat;
mod seed_db;
mod series;
mod sources;
mod store;
mod ui;
mod worker;
