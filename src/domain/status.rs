//! Where an event and an action run stand, and where an event came from.

text_enum! {
    /// The status of an event row (CONTRACT §3).
    pub enum EventStatus("event status") {
        /// Waiting for its first attempt.
        Pending = "pending",
        /// Claimed by a worker under a lease.
        Processing = "processing",
        /// Failed; waiting for `next_attempt_at`.
        Retry = "retry",
        /// Handled.
        Done = "done",
        /// Out of attempts, or failed permanently.
        Error = "error",
        /// Cancelled by an operator; never claimed again.
        Cancelled = "cancelled",
        /// Waiting for an LLM budget (CONTRACT §14): not an attempt, not a failure; looked
        /// at again at `next_attempt_at`.
        Held = "held",
        /// Waiting for a flow-control slot, rate window, debounce window or paused pool
        /// (CONTRACT §13): not an attempt, not a failure; `last_error` says what for.
        Waiting = "waiting",
        /// Ended by flow control: its key had a run waiting or running (`on_conflict: skip`).
        Skipped = "skipped",
        /// Ended by flow control: a newer event of its key took its place.
        Superseded = "superseded",
    }
}

impl EventStatus {
    /// True for the statuses a claim may pick up.
    pub fn is_due_able(self) -> bool {
        matches!(self, EventStatus::Pending | EventStatus::Retry)
    }

    /// The statuses an operator may cancel: waiting for an attempt, a budget or a flow
    /// slot, and not claimed.
    pub const CANCELLABLE: &'static [EventStatus] = &[
        EventStatus::Pending,
        EventStatus::Retry,
        EventStatus::Held,
        EventStatus::Waiting,
    ];

    /// True for the statuses an operator may cancel ([`Self::CANCELLABLE`]).
    pub fn is_cancellable(self) -> bool {
        Self::CANCELLABLE.contains(&self)
    }

    /// The statuses of finished events, the only ones a purge deletes.
    pub const FINISHED: &'static [EventStatus] = &[
        EventStatus::Done,
        EventStatus::Error,
        EventStatus::Cancelled,
        EventStatus::Skipped,
        EventStatus::Superseded,
    ];
}

text_enum! {
    /// The status of an action run row.
    pub enum RunStatus("action run status") {
        /// The handler is running.
        Running = "running",
        /// The handler succeeded.
        Done = "done",
        /// The handler failed.
        Error = "error",
        /// Stopped by flow control (`on_conflict: cancel_running`): its process group killed.
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// Where an event entered the queue.
    pub enum Source("event source") {
        /// `POST /webhook/{hint}`.
        Webhook = "webhook",
        /// A cron tick (`POST /cron/enqueue`, `cron enqueue`).
        Cron = "cron",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_refuse_unknown_words() {
        for s in EventStatus::ALL {
            assert_eq!(s.as_str().parse::<EventStatus>(), Ok(*s));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        assert!("finished".parse::<EventStatus>().is_err());
        assert!("Done".parse::<RunStatus>().is_err());
        assert_eq!("cron".parse(), Ok(Source::Cron));
        assert!(EventStatus::Retry.is_due_able() && !EventStatus::Cancelled.is_due_able());
        assert!(EventStatus::Waiting.is_cancellable() && !EventStatus::Processing.is_cancellable());
        assert!(
            EventStatus::CANCELLABLE
                .iter()
                .all(|s| !EventStatus::FINISHED.contains(s))
        );
    }
}
