//! Admission and release, written once over [`FlowTx`] (CONTRACT §13).
//!
//! An event *arrives* at an action the first time admission sees it there (it has no
//! waiting row yet); only an arrival may skip, supersede or cancel. A woken event keeps
//! its waiting row until it starts, so newer events of its key line up behind it.
//! Between events of one key, row ids decide which is newer: two events claimed together
//! may reach admission in either order.

use chrono::{DateTime, Utc};

use super::tx::{FlowTx, FreedSlot, WaitRow, Waiter, Window};
use super::{Blocked, FlowAsk, FlowRun, FlowVerdict, WAIT_RECHECK, ended_result, per_text, plus, wait_reason};
use crate::domain::EventStatus;
use crate::domain::flow::{MAX_DEBOUNCED, OnConflict};

/// How one run's admission went.
enum Step {
    /// It took its slot.
    Granted,
    /// It waits.
    Wait {
        blocked: Blocked,
        reason: String,
        until: Option<String>,
    },
    /// The arriving event ends.
    End { status: EventStatus, by: i64 },
}

fn parse(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts).ok().map(|t| t.to_utc())
}

fn minus(ts: &str, d: std::time::Duration) -> String {
    let t = parse(ts).unwrap_or_else(Utc::now);
    crate::time::format(t - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(3650)))
}

/// Admits a claimed event's runs with a flow, all or none (see [`FlowVerdict`]).
pub async fn admit<T: FlowTx>(tx: &mut T, ask: &FlowAsk, now: &str) -> Result<FlowVerdict, T::Error> {
    let e = ask.claim.id;
    if !tx.claim_holds(ask.claim).await? {
        return Ok(FlowVerdict::Lost);
    }
    let mut debounced = Vec::new();
    let mut granted: Vec<&FlowRun> = Vec::new();
    for run in &ask.runs {
        let step = decide(tx, e, run, now, &mut debounced).await?;
        match step {
            Step::Granted => granted.push(run),
            Step::Wait { blocked, reason, until } => {
                undo(tx, e, &granted, now).await?;
                let row = WaitRow {
                    provider: &ask.provider,
                    action: &run.action,
                    key: &run.key,
                    pool: run.flow.pool.as_deref(),
                    blocked_on: blocked.as_str(),
                };
                let until = until.unwrap_or_else(|| plus(now, WAIT_RECHECK));
                if !tx.wait_event(ask.claim, &row, &reason, &until, now).await? {
                    return Ok(FlowVerdict::Lost);
                }
                return Ok(FlowVerdict::Wait { reason });
            }
            Step::End { status, by } => {
                undo(tx, e, &granted, now).await?;
                let by_id = tx.event_id(by).await?;
                let result = ended_result(status, &run.action, &run.key, by, by_id.as_deref());
                if !tx
                    .end_event(e, Some((ask.claim, &ask.provider, &run.action)), status, &result, now)
                    .await?
                {
                    return Ok(FlowVerdict::Lost);
                }
                return Ok(FlowVerdict::Ended { status, by });
            }
        }
    }
    tx.delete_waits(e).await?;
    for run in &granted {
        wake_if_room(tx, e, run).await?;
    }
    Ok(FlowVerdict::Run { debounced })
}

/// Gives back the slots (and rate starts) of runs granted before a later run waited.
async fn undo<T: FlowTx>(tx: &mut T, e: i64, granted: &[&FlowRun], now: &str) -> Result<(), T::Error> {
    if granted.is_empty() {
        return Ok(());
    }
    tx.delete_slots(e).await?;
    for run in granted {
        if run.flow.rate.is_some() {
            tx.delete_start(&run.action, &run.key, now).await?;
        }
    }
    Ok(())
}

/// After a grant: when the limits it counts against still have room, the oldest event
/// waiting on them may start too (it may have waited behind this one).
async fn wake_if_room<T: FlowTx>(tx: &mut T, e: i64, run: &FlowRun) -> Result<(), T::Error> {
    let now = crate::time::now();
    let (a, k) = (run.action.as_str(), run.key.as_str());
    // Under a rate alone the next event of the key waits for its window, not a slot.
    let key_room = match run.flow.per_key {
        Some(per_key) => tx.count_key(a, k, -1).await? < i64::from(per_key),
        None => run.flow.rate.is_some(),
    };
    if key_room
        && let Some(w) = tx.oldest_waiter(Waiter::Key(a, k), None).await?
        && w != e
    {
        tx.wake(w, &now).await?;
    }
    if let Some(limit) = run.flow.limit
        && tx.count_action(a, -1).await? < i64::from(limit)
        && let Some(w) = tx.oldest_waiter(Waiter::Limit(a), None).await?
        && w != e
    {
        tx.wake(w, &now).await?;
    }
    if let Some(pool) = run.flow.pool.as_deref()
        && let Some(p) = tx.pool(pool).await?
        && tx.count_pool(pool, -1).await? < p.limit
        && let Some(w) = tx.oldest_waiter(Waiter::Pool(pool), None).await?
        && w != e
    {
        tx.wake(w, &now).await?;
    }
    Ok(())
}

/// Ends `other` (not finished, claimed or not) as superseded by `by`.
async fn supersede<T: FlowTx>(tx: &mut T, other: i64, run: &FlowRun, by: i64, now: &str) -> Result<(), T::Error> {
    let by_id = tx.event_id(by).await?;
    let result = ended_result(EventStatus::Superseded, &run.action, &run.key, by, by_id.as_deref());
    tx.end_event(other, None, EventStatus::Superseded, &result, now).await?;
    Ok(())
}

/// One run's admission: debounce, conflict, then the limits, in that order.
async fn decide<T: FlowTx>(
    tx: &mut T,
    e: i64,
    run: &FlowRun,
    now: &str,
    debounced: &mut Vec<i64>,
) -> Result<Step, T::Error> {
    let (a, k) = (run.action.as_str(), run.key.as_str());
    let flow = &run.flow;
    let waiting_on = tx.waiting_on(e, a).await?;
    let arriving = waiting_on.is_none();

    if let Some(d) = flow.debounce
        && waiting_on.as_deref().is_none_or(|w| w == Blocked::Debounce.as_str())
    {
        let due = |first_at: &str| {
            let quiet = plus(now, d.quiet);
            match d.max_wait {
                Some(m) => quiet.min(plus(first_at, m)),
                None => quiet,
            }
        };
        match tx.window(a, k).await? {
            None => {
                let w = Window {
                    holder: e,
                    first_at: now.to_owned(),
                    due_at: due(now),
                };
                tx.set_window(a, k, &w).await?;
                tx.add_to_window(a, k, e).await?;
                return Ok(debounce_wait(run, &w));
            }
            Some(w) if w.holder == e => {
                if w.due_at.as_str() > now {
                    return Ok(debounce_wait(run, &w));
                }
                let mut events = tx.close_window(a, k, MAX_DEBOUNCED).await?;
                if flow
                    .debounce
                    .is_some_and(|d| d.deliver == crate::domain::flow::Deliver::All)
                {
                    events.retain(|&id| id != e);
                    if events.len() >= MAX_DEBOUNCED {
                        events.remove(0);
                    }
                    events.push(e);
                    *debounced = events;
                }
            }
            Some(w) if w.holder < e => {
                supersede(tx, w.holder, run, e, now).await?;
                let moved = Window {
                    holder: e,
                    due_at: due(&w.first_at),
                    first_at: w.first_at,
                };
                tx.set_window(a, k, &moved).await?;
                tx.add_to_window(a, k, e).await?;
                return Ok(debounce_wait(run, &moved));
            }
            Some(w) => {
                // A newer event of the key holds the window: this one is stale.
                tx.add_to_window(a, k, e).await?;
                return Ok(Step::End {
                    status: EventStatus::Superseded,
                    by: w.holder,
                });
            }
        }
    } else if arriving && flow.on_conflict != OnConflict::Queue {
        let runners = tx.key_runners(a, k, e).await?;
        let waiters = tx.key_waiters(a, k, e).await?;
        match flow.on_conflict {
            OnConflict::Queue => {}
            OnConflict::Skip => {
                if let Some(&by) = runners.first().map(|(id, _)| id).or(waiters.first()) {
                    return Ok(Step::End {
                        status: EventStatus::Skipped,
                        by,
                    });
                }
            }
            OnConflict::Supersede | OnConflict::CancelRunning => {
                // A newer event already waits or runs: this one is the stale one.
                let newest = runners.iter().map(|(id, _)| *id).chain(waiters.iter().copied()).max();
                if let Some(newer) = newest.filter(|&n| n > e) {
                    return Ok(Step::End {
                        status: EventStatus::Superseded,
                        by: newer,
                    });
                }
                for w in waiters {
                    supersede(tx, w, run, e, now).await?;
                }
                if flow.on_conflict == OnConflict::CancelRunning {
                    for (holder, asked) in runners {
                        if asked.is_none() {
                            tx.request_cancel(holder, a, e).await?;
                        }
                    }
                }
            }
        }
    }

    let ordered = flow.per_key.is_some() || flow.rate.is_some();
    if ordered && let Some(w) = tx.oldest_waiter(Waiter::Key(a, k), Some(e)).await? {
        return Ok(slot_wait(
            Blocked::Key,
            run,
            format!("waiting behind event {w} of the same key"),
        ));
    }
    let pool = match flow.pool.as_deref() {
        Some(name) => tx.pool(name).await?.map(|p| (name, p)),
        None => None,
    };
    if let Some((name, p)) = &pool
        && let Some(until) = p.paused_until.as_deref().filter(|u| *u > now)
    {
        return Ok(Step::Wait {
            blocked: Blocked::Paused,
            reason: wait_reason(
                Blocked::Paused,
                run,
                &format!("pool '{name}' is paused until {until} (a run in it was rate limited)"),
            ),
            until: Some(until.to_owned()),
        });
    }
    if let Some(r) = flow.rate
        && let Some(nth) = tx.nth_start(a, k, &minus(now, r.per), r.limit).await?
    {
        let until = plus(&nth, r.per);
        return Ok(Step::Wait {
            blocked: Blocked::Rate,
            reason: wait_reason(
                Blocked::Rate,
                run,
                &format!(
                    "{} starts in the last {} (rate limit); next start at {until}",
                    r.limit,
                    per_text(r.per)
                ),
            ),
            until: Some(until),
        });
    }
    if let Some(per_key) = flow.per_key {
        let running = tx.count_key(a, k, e).await?;
        if running >= i64::from(per_key) {
            let holder = tx.key_runners(a, k, e).await?.first().map(|(id, _)| *id);
            let by = holder.map(|h| format!(" (event {h} runs)")).unwrap_or_default();
            return Ok(slot_wait(
                Blocked::Key,
                run,
                format!("{running} of per_key {per_key} running{by}"),
            ));
        }
    }
    if let Some(limit) = flow.limit {
        if let Some(w) = tx.oldest_waiter(Waiter::Limit(a), Some(e)).await? {
            return Ok(slot_wait(
                Blocked::Limit,
                run,
                format!("waiting behind event {w} for the action's limit {limit}"),
            ));
        }
        let running = tx.count_action(a, e).await?;
        if running >= i64::from(limit) {
            return Ok(slot_wait(
                Blocked::Limit,
                run,
                format!("{running} of limit {limit} runs of the action running"),
            ));
        }
    }
    if let Some((name, p)) = &pool {
        if let Some(w) = tx.oldest_waiter(Waiter::Pool(name), Some(e)).await? {
            return Ok(slot_wait(
                Blocked::Pool,
                run,
                format!("waiting behind event {w} for pool '{name}'"),
            ));
        }
        let running = tx.count_pool(name, e).await?;
        if running >= p.limit {
            return Ok(slot_wait(
                Blocked::Pool,
                run,
                format!("{running} of pool '{name}' limit {} running", p.limit),
            ));
        }
    }
    tx.insert_slot(e, run, now).await?;
    if flow.rate.is_some() {
        tx.insert_start(a, k, now).await?;
    }
    Ok(Step::Granted)
}

fn debounce_wait(run: &FlowRun, w: &Window) -> Step {
    Step::Wait {
        blocked: Blocked::Debounce,
        reason: wait_reason(
            Blocked::Debounce,
            run,
            &format!("runs at {} unless a newer event of the key comes first", w.due_at),
        ),
        until: Some(w.due_at.clone()),
    }
}

fn slot_wait(blocked: Blocked, run: &FlowRun, detail: String) -> Step {
    Step::Wait {
        blocked,
        reason: wait_reason(blocked, run, &detail),
        until: None,
    }
}

/// Frees an event's slots and wakes, per freed slot, the oldest event waiting for its key,
/// for its action's limit and for its pool.
pub async fn release<T: FlowTx>(tx: &mut T, row_id: i64, now: &str) -> Result<u64, T::Error> {
    let freed = tx.delete_slots(row_id).await?;
    wake_for(tx, &freed, now).await
}

/// Wakes the waiters `freed` slots may let start; returns how many it woke.
pub async fn wake_for<T: FlowTx>(tx: &mut T, freed: &[FreedSlot], now: &str) -> Result<u64, T::Error> {
    let mut woken = Vec::new();
    for slot in freed {
        let mut candidates = vec![
            tx.oldest_waiter(Waiter::Key(&slot.action, &slot.key), None).await?,
            tx.oldest_waiter(Waiter::Limit(&slot.action), None).await?,
        ];
        if let Some(pool) = slot.pool.as_deref() {
            candidates.push(tx.oldest_waiter(Waiter::Pool(pool), None).await?);
        }
        for w in candidates.into_iter().flatten() {
            if !woken.contains(&w) && tx.wake(w, now).await? {
                woken.push(w);
            }
        }
    }
    Ok(woken.len() as u64)
}
