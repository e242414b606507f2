//! A schedule of the built-in scheduler (CONTRACT §9), as configured and stored.

text_enum! {
    /// What happens to ticks that fell while no instance was running.
    #[derive(Default)]
    pub enum Missed("missed policy") {
        /// Enqueue only the most recent missed tick (the default).
        #[default]
        Latest = "latest",
        /// Enqueue none of them.
        Skip = "skip",
    }
}

/// A schedule's definition: upserted by `job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The job name (the cron event's `job`).
    pub job: String,
    /// The cron expression: 5 fields, 6 with seconds, or an `@hourly`-style alias.
    pub cron: String,
    /// IANA time zone name the expression is read in.
    pub timezone: String,
    /// A JSON object merged into the tick's payload, as JSON text.
    pub payload_json: String,
    /// Disabled schedules are kept but never tick.
    pub enabled: bool,
    /// The policy for ticks missed during downtime.
    pub missed: Missed,
}
