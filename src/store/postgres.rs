//! PostgreSQL backend (being written).

use super::*;
use crate::routing::{Mapping, Rule};

/// Connection settings.
pub struct PgOptions;

impl PgOptions {
    /// From the service settings.
    pub fn from_settings(_: &crate::settings::Settings) -> PgOptions {
        PgOptions
    }
}

/// The PostgreSQL store.
pub struct PgStore;

impl PgStore {
    /// Connects.
    pub async fn connect(_: &str, _: &PgOptions) -> Result<PgStore, StoreError> {
        Err(StoreError::Config("PostgreSQL is not available in this build".into()))
    }
}
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    fn enqueue(&self, _: NewEvent) -> StoreFuture<'_, Enqueued> {
        todo!()
    }
    fn claim(&self, _: usize, _: Duration) -> StoreFuture<'_, Vec<ClaimedEvent>> {
        todo!()
    }
    fn renew(&self, _: Vec<ClaimRef>, _: Duration) -> StoreFuture<'_, ()> {
        todo!()
    }
    fn finish(&self, _: Finish) -> StoreFuture<'_, bool> {
        todo!()
    }
    fn release(&self, _: Vec<ClaimRef>) -> StoreFuture<'_, u64> {
        todo!()
    }
    fn reclaim_expired(&self, _: u32) -> StoreFuture<'_, u64> {
        todo!()
    }
    fn start_action_run(&self, _: ActionRunRecord) -> StoreFuture<'_, ()> {
        todo!()
    }
    fn action_run(&self, _: i64, _: &str) -> StoreFuture<'_, Option<ActionRunRow>> {
        todo!()
    }
    fn event(&self, _: i64) -> StoreFuture<'_, Option<EventRow>> {
        todo!()
    }
    fn action_runs(&self, _: i64) -> StoreFuture<'_, Vec<ActionRunRow>> {
        todo!()
    }
    fn list_events(&self, _: Option<String>, _: i64) -> StoreFuture<'_, Vec<EventRow>> {
        todo!()
    }
    fn replay(&self, _: i64) -> StoreFuture<'_, bool> {
        todo!()
    }
    fn routing_version(&self) -> StoreFuture<'_, i64> {
        todo!()
    }
    fn routing_tables(&self) -> StoreFuture<'_, RoutingTables> {
        todo!()
    }
    fn mapping(&self, _: &str) -> StoreFuture<'_, Option<Mapping>> {
        todo!()
    }
    fn rules(&self, _: &str) -> StoreFuture<'_, Vec<Rule>> {
        todo!()
    }
    fn apply(&self, _: RoutingChanges) -> StoreFuture<'_, ()> {
        todo!()
    }
}
