//! The vocabulary every module shares: the enumerated values of the contract (handler
//! modes, statuses, sources, LLM back-ends, settings with a fixed set of values), the
//! stored timestamp, the routing records and schedules, and the names of the built-in
//! providers ([`provider`]).
//!
//! Each enum parses from its one spelling and fails on anything else: an unknown value is
//! an error where it enters (command line, config file, database row), never a default.
//! This module imports nothing else of the crate.

#[macro_use]
mod text_enum;
pub mod flow;
mod modes;
pub mod provider;
mod redacted;
mod routing;
mod schedule;
mod settings;
pub mod spelling;
mod status;
mod timestamp;
mod usage;

pub use modes::{HandlerMode, LlmMode, LlmProvider};
pub use redacted::Redacted;
pub use routing::{Mapping, RoutingChanges, Rule, RuleUpsert};
pub use schedule::{Missed, Schedule};
pub use settings::{LogFormat, SqliteSynchronous};
pub use status::{EventStatus, RunStatus, Source};
pub use text_enum::UnknownValue;
pub use timestamp::Timestamp;
pub use usage::{ActionBudget, Budget, Price, Prices, TOKEN_KINDS, Usage};
