-- Claims and lease renewals as HOT updates (issue 26). A claim sets leased_until, and
-- while that column was in the WHERE of both queue indexes, every claim wrote a new row
-- version indexed again in the primary key and in event_queue_leased, and with pages
-- filled to the brim the version went to another page (one more WAL record). Now no
-- index names leased_until, and 70 % of each page is left free, so a claim or renewal
-- writes the row version on its page and touches no index. A claim takes most rows of a
-- page at once, while their old versions are still live, so a page needs room for a new
-- version of nearly every row: with 50 % free, a third of the claims found none.
--
-- * event_queue_due holds every queue row. A claim still takes only waiting rows (its
--   WHERE tests leased_until on the row); the claimed rows it steps over are the ones
--   running right now, and the claim's cursor (store/postgres/claim.rs) starts after them.
-- * The reclaimer, which looks for expired leases every few seconds, reads the queue
--   without an index: the queue holds only waiting and running events.
ALTER TABLE event_queue SET (fillfactor = 30);
DROP INDEX IF EXISTS event_queue_leased;
DROP INDEX IF EXISTS event_queue_due;
CREATE INDEX event_queue_due ON event_queue (run_at, event_row_id);
