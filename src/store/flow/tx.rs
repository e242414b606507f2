//! The statements flow control runs inside one transaction, as a trait both backends
//! implement: SQLite's on the writer's transaction (each method completes at once), and
//! PostgreSQL's on a transaction holding the advisory locks of the actions and pools it
//! touches. [`super::admit`] and [`super::release`] are written once against it.

use crate::domain::EventStatus;
use crate::store::ClaimRef;

/// An open debounce window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The event that will run (the latest so far).
    pub holder: i64,
    /// When the window opened.
    pub first_at: String,
    /// When it is due.
    pub due_at: String,
}

/// A pool as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    /// Runs at once.
    pub limit: i64,
    /// Paused until, if ever paused.
    pub paused_until: Option<String>,
}

/// A freed slot: where its wake-ups look.
#[derive(Debug, Clone, PartialEq)]
pub struct FreedSlot {
    /// Its action.
    pub action: String,
    /// Its key.
    pub key: String,
    /// Its pool.
    pub pool: Option<String>,
}

/// A waiting row to write.
pub struct WaitRow<'a> {
    /// The event's provider (stored on the event for listings).
    pub provider: &'a str,
    /// The action.
    pub action: &'a str,
    /// The key.
    pub key: &'a str,
    /// The pool.
    pub pool: Option<&'a str>,
    /// What for ([`super::Blocked::as_str`]).
    pub blocked_on: &'static str,
}

/// Which waiter a wake-up looks for.
pub enum Waiter<'a> {
    /// The oldest waiting for a slot of `(action, key)`.
    Key(&'a str, &'a str),
    /// The oldest waiting for the action's limit.
    Limit(&'a str),
    /// The oldest waiting for the pool's limit.
    Pool(&'a str),
}

/// One transaction's flow statements. Every method runs inside the caller's transaction.
#[allow(async_fn_in_trait)] // used with static dispatch only
pub trait FlowTx {
    /// The backend's error.
    type Error;

    /// Whether `claim` still holds (the event is claimed under that attempt).
    async fn claim_holds(&mut self, claim: ClaimRef) -> Result<bool, Self::Error>;
    /// An event's `event_id`.
    async fn event_id(&mut self, row_id: i64) -> Result<Option<String>, Self::Error>;
    /// A pool.
    async fn pool(&mut self, name: &str) -> Result<Option<PoolRow>, Self::Error>;

    /// The open window of `(action, key)`.
    async fn window(&mut self, action: &str, key: &str) -> Result<Option<Window>, Self::Error>;
    /// Opens or moves the window of `(action, key)`.
    async fn set_window(&mut self, action: &str, key: &str, w: &Window) -> Result<(), Self::Error>;
    /// Closes the window of `(action, key)` and returns its events (oldest first, at most
    /// `max`, the newest kept).
    async fn close_window(&mut self, action: &str, key: &str, max: usize) -> Result<Vec<i64>, Self::Error>;
    /// Adds an event to the window's list.
    async fn add_to_window(&mut self, action: &str, key: &str, row_id: i64) -> Result<(), Self::Error>;

    /// What `row_id` waits for in `action`, if it has a waiting row.
    async fn waiting_on(&mut self, row_id: i64, action: &str) -> Result<Option<String>, Self::Error>;
    /// Events other than `except` holding a slot of `(action, key)`, oldest first, with
    /// who asked them to stop.
    async fn key_runners(
        &mut self,
        action: &str,
        key: &str,
        except: i64,
    ) -> Result<Vec<(i64, Option<i64>)>, Self::Error>;
    /// Events other than `except` waiting in `(action, key)`, oldest first.
    async fn key_waiters(&mut self, action: &str, key: &str, except: i64) -> Result<Vec<i64>, Self::Error>;
    /// The oldest waiter of `which` older than `before` (any age when `None`), not timed.
    async fn oldest_waiter(&mut self, which: Waiter<'_>, before: Option<i64>) -> Result<Option<i64>, Self::Error>;
    /// Slots held in `(action, key)` by other events than `except`.
    async fn count_key(&mut self, action: &str, key: &str, except: i64) -> Result<i64, Self::Error>;
    /// Slots held by runs of `action` (other events than `except`).
    async fn count_action(&mut self, action: &str, except: i64) -> Result<i64, Self::Error>;
    /// Slots held in `pool` (other events than `except`).
    async fn count_pool(&mut self, pool: &str, except: i64) -> Result<i64, Self::Error>;
    /// The `n`-th newest start of `(action, key)` after `since`, if there are `n`.
    async fn nth_start(&mut self, action: &str, key: &str, since: &str, n: u32) -> Result<Option<String>, Self::Error>;

    /// Takes a slot (`limited`: its flow has an action-wide limit).
    async fn insert_slot(&mut self, row_id: i64, run: &super::FlowRun, now: &str) -> Result<(), Self::Error>;
    /// Records a start for the rate window.
    async fn insert_start(&mut self, action: &str, key: &str, now: &str) -> Result<(), Self::Error>;
    /// Asks `holder`'s run in `action` to stop for event `by`.
    async fn request_cancel(&mut self, holder: i64, action: &str, by: i64) -> Result<(), Self::Error>;
    /// Frees every slot of an event; returns what they were.
    async fn delete_slots(&mut self, row_id: i64) -> Result<Vec<FreedSlot>, Self::Error>;
    /// Deletes the rate starts recorded at `now` for `(action, key)` (an admission undone).
    async fn delete_start(&mut self, action: &str, key: &str, now: &str) -> Result<(), Self::Error>;
    /// Drops every waiting row of an event.
    async fn delete_waits(&mut self, row_id: i64) -> Result<(), Self::Error>;

    /// Ends an event that is not finished (claimed or not): `status`, `result_json`; its
    /// queue entry and waiting rows go. With `claim` (the arriving event, and its provider
    /// and action to store), only while that claim holds.
    async fn end_event(
        &mut self,
        row_id: i64,
        claim: Option<(ClaimRef, &str, &str)>,
        status: EventStatus,
        result_json: &str,
        now: &str,
    ) -> Result<bool, Self::Error>;
    /// Makes a claimed event `waiting` until `until`, its attempt given back, and writes
    /// its waiting row (keeping `since` when it had one).
    async fn wait_event(
        &mut self,
        claim: ClaimRef,
        row: &WaitRow<'_>,
        reason: &str,
        until: &str,
        now: &str,
    ) -> Result<bool, Self::Error>;
    /// Makes a waiting event due now (it keeps its waiting row, and so its place).
    async fn wake(&mut self, row_id: i64, now: &str) -> Result<bool, Self::Error>;
}
