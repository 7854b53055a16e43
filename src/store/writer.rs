//! The single owner of the write connection. Callers send commands over a channel; the
//! writer takes every command waiting, runs them in one transaction (each inside its own
//! savepoint, so one failing command does not undo the others), commits, and only then
//! answers. Many small writers thus share one fsync (group commit). What a commit did is
//! counted in the metrics only once it has committed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::db::{Db, Dialect, Transaction};
use crossbeam_channel::{Receiver, Sender};

use super::faults::{storage_fault, Faults, StoreUnavailable};
use super::forget::{self, Forgotten};
use super::health::{self, HealthCommand};
use super::prune::prune;
use super::writes::{audit, cancel_removed, forget_positions, ingest_batch, put_setting, record};
use super::{measure, DueHints, PruneReport, PruneRequest, StoreStatus};
use super::{
    AttemptRecord, AuditEntry, ClaimRequest, ClaimResult, IngestBatch, IngestReport, Replayed,
};
use crate::metrics::{Metrics, Tally};

/// Most commands folded into one transaction: bounds the latency one commit adds.
const MAX_COMMANDS_PER_COMMIT: usize = 512;

type Reply<T> = Sender<anyhow::Result<T>>;

pub(super) enum Command {
    /// Receiver health and the delivery switch (`health.rs`).
    Health(HealthCommand),
    Ingest(IngestBatch, Reply<IngestReport>),
    Claim {
        requests: Vec<ClaimRequest>,
        budget: usize,
        group_budgets: Vec<usize>,
        now_ms: i64,
        lease_until_ms: i64,
        reply: Reply<ClaimResult>,
    },
    Record(Vec<AttemptRecord>),
    CancelRemoved {
        keep: Vec<String>,
        when: &'static str,
        reply: Reply<usize>,
    },
    Audit(AuditEntry, Reply<()>),
    PutSetting {
        key: String,
        value: String,
        /// Keep a value already there (several nodes may start at once).
        first_only: bool,
        reply: Reply<()>,
    },
    Admin(AdminCommand),
    ForgetPositions(Vec<String>),
    Prune(PruneRequest, Reply<PruneReport>),
    SetMaxSize(Option<u64>),
    SetOrdered(HashSet<String>),
    /// Answered in the writer's loop, outside any transaction: proves the writer is alive
    /// without costing an fsync.
    Ping(Reply<StoreStatus>),
    Shutdown,
}

impl Command {
    /// The kind of work, as `/healthz` names commits that fail.
    fn kind(&self) -> Option<&'static str> {
        Some(match self {
            Command::Ingest(..) => "ingest",
            Command::Health(_) => "receiver health",
            Command::Claim { .. } => "claim",
            Command::Record(_) => "record",
            Command::CancelRemoved { .. } => "cancel",
            Command::Audit(..) => "audit",
            Command::PutSetting { .. } => "setting",
            Command::Admin(_) => "admin",
            Command::ForgetPositions(_) => "spool positions",
            Command::Prune(..) => "prune",
            Command::SetMaxSize(_)
            | Command::SetOrdered(_)
            | Command::Ping(_)
            | Command::Shutdown => return None,
        })
    }

    /// Claims and bookkeeping may be lost in a crash without harm (a lost claim leaves the
    /// delivery pending); anything that acknowledges input or records an outcome may not.
    fn needs_durability(&self) -> bool {
        // A prune lost in a crash is simply done again.
        !matches!(
            self,
            Command::Claim { .. }
                | Command::ForgetPositions(_)
                | Command::Prune(..)
                | Command::SetMaxSize(_)
                | Command::SetOrdered(_)
                | Command::Ping(_)
        )
    }
}

/// Operator actions from the admin page and CLI (`store/query.rs` has their reads).
pub(super) enum AdminCommand {
    Retry {
        delivery_id: i64,
        reply: Reply<()>,
    },
    RetryFailed {
        subscription: String,
        since_ms: i64,
        include_cancelled: bool,
        reply: Reply<usize>,
    },
    Replay {
        event_id: String,
        subscription: String,
        reply: Reply<Replayed>,
    },
    SetPaused {
        subscription: String,
        paused: bool,
        reply: Reply<bool>,
    },
    /// `renamed_from`: see `store/rename.rs`.
    Rename {
        renames: Vec<(String, String)>,
        reply: Reply<usize>,
    },
    Forget {
        conversation: String,
        let_pending_finish: bool,
        reply: Reply<Forgotten>,
    },
}

/// A cheap, cloneable way to reach the writer.
#[derive(Clone)]
pub struct StoreHandle {
    commands: Sender<Command>,
    /// Subscriptions paused from the admin page: read by the scheduler at every claim,
    /// so it is kept in memory beside the durable `subscription_state` rows it mirrors.
    paused: Arc<RwLock<HashSet<String>>>,
    /// Since when each failing subscription has failed (see `health.rs`).
    failing: Arc<RwLock<HashMap<String, i64>>>,
    /// The operator's "pause all" (see `health.rs`).
    delivery_paused: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    faults: Arc<Faults>,
    hints: Arc<DueHints>,
    /// Other nodes share the store (PostgreSQL): what they change sends no hint here.
    shared: bool,
    /// On PostgreSQL: claims run here, beside the writer (see `claimer.rs`).
    claimer: Option<Arc<super::claimer::Claimer>>,
}

impl StoreHandle {
    /// Whether other nodes may share this store (PostgreSQL), so that work, pauses and
    /// the global switch may change without this node hearing of it.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Takes the pauses and the global switch as the store now holds them (see
    /// [`Reader::switches`](super::Reader::switches)): on a shared store another node
    /// may have changed them.
    pub fn adopt_switches(&self, paused: HashSet<String>, delivery_paused: bool) {
        *self.paused.write().unwrap_or_else(|e| e.into_inner()) = paused;
        self.delivery_paused
            .store(delivery_paused, Ordering::Relaxed);
    }

    /// Stores a batch durably; returns once it is committed.
    pub fn ingest(&self, batch: IngestBatch) -> anyhow::Result<IngestReport> {
        self.ask(|reply| Command::Ingest(batch, reply))
    }

    /// Leases up to `limit` due deliveries per subscription until `lease_until_ms`.
    pub fn claim(
        &self,
        requests: Vec<ClaimRequest>,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> anyhow::Result<ClaimResult> {
        let budget = requests.iter().map(|r| r.limit).sum();
        let groups = requests.iter().map(|r| r.group + 1).max().unwrap_or(0);
        self.claim_within(
            requests,
            budget,
            vec![budget; groups],
            now_ms,
            lease_until_ms,
        )
    }

    /// Like [`claim`](Self::claim), but leases at most `budget` deliveries in all, and
    /// at most `group_budgets[g]` for the requests of group `g`: the requests are served
    /// in order, and one whose budget is spent is not looked at (it is in neither
    /// `claimed` nor `short`).
    pub fn claim_within(
        &self,
        requests: Vec<ClaimRequest>,
        budget: usize,
        group_budgets: Vec<usize>,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> anyhow::Result<ClaimResult> {
        if let Some(claimer) = &self.claimer {
            return claimer.claim(&requests, budget, group_budgets, now_ms, lease_until_ms);
        }
        self.ask(|reply| Command::Claim {
            requests,
            budget,
            group_budgets,
            now_ms,
            lease_until_ms,
            reply,
        })
    }

    /// Queues attempt outcomes; they are committed in order before any later command
    /// (on PostgreSQL, claims count them as finished until then: see `claimer.rs`).
    pub fn record(&self, records: Vec<AttemptRecord>) {
        if records.is_empty() {
            return;
        }
        if let Some(claimer) = &self.claimer {
            claimer.finishing.add(&records);
        }
        let _ = self.commands.send(Command::Record(records));
    }

    /// Cancels pending deliveries of every subscription not named in `keep`; their
    /// `last_error` says the subscription was `when` (e.g. "removed from the config at
    /// reload").
    pub fn cancel_removed_subscriptions(
        &self,
        keep: Vec<String>,
        when: &'static str,
    ) -> anyhow::Result<usize> {
        self.ask(|reply| Command::CancelRemoved { keep, when, reply })
    }

    /// Writes one row of the audit log, durably.
    pub fn audit(&self, entry: AuditEntry) -> anyhow::Result<()> {
        self.ask(|reply| Command::Audit(entry, reply))
    }

    /// Keeps a setting posthorn made for itself (read back with `Reader::setting`).
    pub fn put_setting(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.ask(|reply| Command::PutSetting {
            key,
            value,
            first_only: false,
            reply,
        })
    }

    /// Keeps `value` under `key` unless the key has a value already: of nodes starting
    /// together, the first to commit sets it. Read it back to learn which one won.
    pub fn put_setting_first(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.ask(|reply| Command::PutSetting {
            key,
            value,
            first_only: true,
            reply,
        })
    }

    /// Makes one delivery (pending, dead or cancelled) due now. Its attempts are kept, so
    /// the next one is numbered after them; with the retry schedule used up, a failure
    /// makes it dead again at once. Refused with an [`AdminRefusal`] when the delivery is
    /// unknown, delivered (replay the event instead), being sent right now, or its event's
    /// body was dropped by retention.
    pub fn retry_delivery(&self, delivery_id: i64) -> anyhow::Result<()> {
        self.ask(|reply| Command::Admin(AdminCommand::Retry { delivery_id, reply }))
    }

    /// Makes due now every dead delivery of `subscription` that died at or after
    /// `since_ms`, and every pending one whose last attempt failed at or after it (not
    /// those being sent right now). Deliveries whose event body was dropped are left
    /// alone. With `include_cancelled`, cancelled ones cancelled at or after `since_ms` too
    /// (a subscription removed, or renamed without `renamed_from`, and back). Returns how
    /// many were made due.
    pub fn retry_failed(
        &self,
        subscription: String,
        since_ms: i64,
        include_cancelled: bool,
    ) -> anyhow::Result<usize> {
        self.ask(|reply| {
            Command::Admin(AdminCommand::RetryFailed {
                subscription,
                since_ms,
                include_cancelled,
                reply,
            })
        })
    }

    /// Sends the event `event_id` to `subscription` again (see [`Replayed`]). Whether the
    /// subscription exists, and whether it may have the event, is the caller's question.
    pub fn replay(&self, event_id: String, subscription: String) -> anyhow::Result<Replayed> {
        self.ask(|reply| {
            Command::Admin(AdminCommand::Replay {
                event_id,
                subscription,
                reply,
            })
        })
    }

    /// Pauses or resumes `subscription`, durably; returns whether that changed anything.
    /// The scheduler sees the change from its next claim.
    pub fn set_paused(&self, subscription: String, paused: bool) -> anyhow::Result<bool> {
        let name = subscription.clone();
        let changed = self.ask(|reply| {
            Command::Admin(AdminCommand::SetPaused {
                subscription,
                paused,
                reply,
            })
        })?;
        if paused {
            self.paused_set().insert(name);
        } else {
            // A resume restarts the clock of auto-pause (see `admin::set_paused`).
            self.failing_map().remove(&name);
            self.paused_set().remove(&name);
        }
        Ok(changed)
    }

    /// Forgets a conversation (see `forget.rs`): blanks its payloads and snippets,
    /// cancels its pending deliveries unless `let_pending_finish`, and empties the WAL.
    pub fn forget_conversation(
        &self,
        conversation: String,
        let_pending_finish: bool,
    ) -> anyhow::Result<Forgotten> {
        self.ask(|reply| {
            Command::Admin(AdminCommand::Forget {
                conversation,
                let_pending_finish,
                reply,
            })
        })
    }

    pub(super) fn paused_set(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<String>> {
        self.paused.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn failing_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, i64>> {
        self.failing.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn delivery_paused_flag(&self) -> &AtomicBool {
        &self.delivery_paused
    }

    /// Queues a command nobody waits for.
    pub(super) fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .send(command)
            .map_err(|_| anyhow::anyhow!("the store writer has stopped"))
    }

    /// Whether `subscription` is paused (kept across restarts).
    pub fn is_paused(&self, subscription: &str) -> bool {
        self.paused
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(subscription)
    }

    /// Drops spool positions of files that no longer exist.
    pub fn forget_positions(&self, file_keys: Vec<String>) {
        if !file_keys.is_empty() {
            let _ = self.commands.send(Command::ForgetPositions(file_keys));
        }
    }

    /// Runs one bounded retention step (see `prune.rs`).
    pub fn prune(&self, request: PruneRequest) -> anyhow::Result<PruneReport> {
        self.ask(|reply| Command::Prune(request, reply))
    }

    /// From now on, refuse input (with [`StoreFull`]) while the database and its WAL
    /// hold more than `max_size` bytes; `None` lifts the limit.
    pub fn set_max_size(&self, max_size: Option<u64>) {
        self.metrics.set_max_size(max_size);
        let _ = self.commands.send(Command::SetMaxSize(max_size));
    }

    /// The subscriptions with `ordering = "conversation"`: from now on their new
    /// deliveries carry their conversation, which the claim's head-of-line check and
    /// its index use. Other deliveries leave it out, so they cost that index nothing.
    pub fn set_ordered(&self, subscriptions: HashSet<String>) {
        let _ = self.commands.send(Command::SetOrdered(subscriptions));
    }

    /// A round trip through the writer, waiting at most `wait`: once every command
    /// queued before it is done, the writer answers with the store's size and limit.
    pub fn ping(&self, wait: Duration) -> anyhow::Result<StoreStatus> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands
            .send(Command::Ping(reply))
            .map_err(|_| anyhow::anyhow!("the store writer has stopped"))?;
        match answer.recv_timeout(wait) {
            Ok(status) => status,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(anyhow::anyhow!(
                "the store writer did not answer within {} s",
                wait.as_secs_f64()
            )),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(anyhow::anyhow!("the store writer stopped before answering"))
            }
        }
    }

    /// Which subscriptions got work due now since the scheduler last took the hints.
    pub fn due_hints(&self) -> &DueHints {
        &self.hints
    }

    /// The counters the writer keeps, and the signs of life of delivery.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Commits that fail and what the integrity check at start found.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    pub(super) fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    pub(super) fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> anyhow::Result<T> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands
            .send(make(reply))
            .map_err(|_| anyhow::anyhow!("the store writer has stopped"))?;
        answer
            .recv()
            .map_err(|_| anyhow::anyhow!("the store writer stopped before answering"))?
    }
}

/// Milliseconds since the Unix epoch: the store's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Writer {
    conn: Db,
    new_work: Sender<()>,
    /// Whether the connection is currently at `synchronous = FULL`.
    durable: bool,
    /// `[storage] max_size` and what the store holds (see `room.rs`).
    budget: super::room::Budget,
    metrics: Arc<Metrics>,
    faults: Arc<Faults>,
    hints: Arc<DueHints>,
    /// Subscriptions with ordering by conversation (see `StoreHandle::set_ordered`).
    ordered: HashSet<String>,
    /// Whether a forgotten conversation waits for deliveries to finish (`forget.rs`).
    forgetting: bool,
    /// On PostgreSQL: outcomes claims count as finished until they are committed.
    finishing: Option<Arc<super::claimer::Finishing>>,
}

/// An answer held back until the transaction commits.
enum Pending {
    Ingest(Reply<IngestReport>, anyhow::Result<IngestReport>),
    Claim(Reply<ClaimResult>, anyhow::Result<ClaimResult>),
    Cancel(Reply<usize>, anyhow::Result<usize>),
    Audit(Reply<()>, anyhow::Result<()>),
    Prune(Reply<PruneReport>, anyhow::Result<PruneReport>),
    Unit(Reply<()>, anyhow::Result<()>),
    Count(Reply<usize>, anyhow::Result<usize>),
    Replay(Reply<Replayed>, anyhow::Result<Replayed>),
    Flag(Reply<bool>, anyhow::Result<bool>),
    Forget(Reply<Forgotten>, anyhow::Result<Forgotten>),
}

impl Writer {
    fn run(mut self, inbox: Receiver<Command>) {
        let mut stopping = false;
        while !stopping {
            let Ok(first) = inbox.recv() else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_COMMANDS_PER_COMMIT {
                match inbox.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            if let Some(at) = batch.iter().position(|c| matches!(c, Command::Shutdown)) {
                // Commands sent after shutdown cannot exist (the sender stops first), but
                // everything queued before it is still written.
                batch.truncate(at);
                stopping = true;
            }
            let (pings, batch): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|c| matches!(c, Command::Ping(_)));
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
            if !pings.is_empty() {
                self.answer_pings(pings);
            }
        }
        tracing::debug!("store writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<Command>) {
        let recorded: Vec<i64> = match &self.finishing {
            Some(_) => batch
                .iter()
                .flat_map(|c| match c {
                    Command::Record(records) => records.as_slice(),
                    _ => &[],
                })
                .map(|r| r.delivery_id)
                .collect(),
            None => Vec::new(),
        };
        self.commit_one(batch);
        if let Some(finishing) = &self.finishing {
            finishing.remove(&recorded);
        }
    }

    /// Runs `batch` in one transaction.
    fn commit_one(&mut self, batch: Vec<Command>) {
        let durable = batch.iter().any(Command::needs_durability);
        if durable != self.durable {
            let level = if durable { "FULL" } else { "NORMAL" };
            let set = match self.conn.as_sqlite() {
                Some(conn) => conn.pragma_update(None, "synchronous", level),
                None => Ok(()),
            };
            if let Err(err) = set {
                tracing::error!(%err, "could not set synchronous = {level}");
            } else {
                self.durable = durable;
            }
        }

        let mut kinds: Vec<&'static str> = batch.iter().filter_map(Command::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        // Kinds whose own work failed for a storage reason although the batch committed.
        let mut own_faults: Vec<(&'static str, String)> = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        let mut created_deliveries = false;
        let mut due_for: HashSet<String> = HashSet::new();
        let mut due_everywhere = false;
        let mut tally = Tally::default();
        let (mut recorded, mut forgets, mut erased) = (false, false, false);
        let postgres = self.conn.dialect() == Dialect::Postgres;
        let outcome = (|| -> crate::store::db::Result<()> {
            // As SQLite's synchronous = NORMAL for the same batches: what they write may
            // be lost in a server crash without harm (claims run apart: `claimer.rs`).
            let mut tx = match (postgres, durable) {
                (true, false) => self
                    .conn
                    .transaction_with("SET LOCAL synchronous_commit = off")?,
                _ => self.conn.transaction()?,
            };
            for command in batch {
                match command {
                    Command::Health(command) => {
                        let result =
                            in_savepoint(&mut tx, |tx| Ok(health::run(tx, command, now_ms())));
                        match result {
                            Ok(Some((reply, answer))) => answers.push(Pending::Flag(reply, answer)),
                            Ok(None) => {}
                            Err(err) => tracing::error!("{err:#}"),
                        }
                    }
                    Command::Ingest(ingest, reply) => {
                        if let Some(full) = self.budget.refusal(&ingest) {
                            answers.push(Pending::Ingest(reply, Err(full.into())));
                            continue;
                        }
                        let ordered = &self.ordered;
                        let result = in_savepoint(&mut tx, |tx| ingest_batch(tx, &ingest, ordered))
                            .map_err(|err| storage_fault(err, "ingest", &mut own_faults));
                        if let Ok(report) = &result {
                            created_deliveries |= report.deliveries > 0;
                            if report.deliveries > 0 {
                                for name in ingest.events.iter().flat_map(|r| &r.subscriptions) {
                                    if !due_for.contains(name) {
                                        due_for.insert(name.clone());
                                    }
                                }
                            }
                            tally.ingest(
                                &ingest.source,
                                report.stored,
                                report.duplicates,
                                ingest.rejections.len(),
                            );
                        }
                        answers.push(Pending::Ingest(reply, result));
                    }
                    Command::Claim {
                        requests,
                        budget,
                        mut group_budgets,
                        now_ms,
                        lease_until_ms,
                        reply,
                    } => {
                        let budgets = super::claim::Budgets {
                            total: budget,
                            groups: &mut group_budgets,
                            finishing: &[],
                        };
                        let claim = |tx: &Db| {
                            super::claim::claim(tx, &requests, budgets, now_ms, lease_until_ms)
                        };
                        let result = in_savepoint(&mut tx, claim);
                        answers.push(Pending::Claim(reply, result));
                    }
                    Command::Record(records) => {
                        recorded = true;
                        match in_savepoint(&mut tx, |tx| record(tx, &records)) {
                            Ok(finished) => {
                                for (r, finished) in records.iter().zip(finished) {
                                    tally.attempt(&r.subscription, r.next, r.duration_ms, finished);
                                }
                            }
                            Err(err) => {
                                let err = storage_fault(err, "record", &mut own_faults);
                                tracing::error!("could not record delivery attempts: {err:#}")
                            }
                        }
                    }
                    Command::CancelRemoved { keep, when, reply } => {
                        let result = in_savepoint(&mut tx, |tx| cancel_removed(tx, &keep, when));
                        answers.push(Pending::Cancel(reply, result));
                    }
                    Command::Audit(entry, reply) => {
                        let result = in_savepoint(&mut tx, |tx| audit(tx, &entry));
                        answers.push(Pending::Audit(reply, result));
                    }
                    Command::PutSetting {
                        key,
                        value,
                        first_only,
                        reply,
                    } => {
                        let result =
                            in_savepoint(&mut tx, |tx| put_setting(tx, &key, &value, first_only));
                        answers.push(Pending::Audit(reply, result));
                    }
                    Command::Admin(command) => {
                        if let AdminCommand::Forget { .. } = command {
                            forgets = true;
                        }
                        let (answer, queued) = admin(&mut tx, command);
                        created_deliveries |= queued;
                        due_everywhere |= queued;
                        answers.push(answer);
                    }
                    Command::ForgetPositions(keys) => {
                        if let Err(err) = in_savepoint(&mut tx, |tx| forget_positions(tx, &keys)) {
                            tracing::warn!(%err, "could not forget spool positions");
                        }
                    }
                    Command::Prune(request, reply) => {
                        let result = in_savepoint(&mut tx, |tx| prune(tx, &request, now_ms()));
                        answers.push(Pending::Prune(reply, result));
                    }
                    Command::SetMaxSize(max_size) => self.budget.max = max_size,
                    Command::SetOrdered(names) => self.ordered = names,
                    Command::Ping(_) | Command::Shutdown => {}
                }
            }
            if forgets || (recorded && self.forgetting) {
                // After the batch's records: what they finished can be erased now.
                match in_savepoint(&mut tx, |tx| {
                    forget::erasing(tx, |tx| forget::settle_waiting(tx, now_ms()))
                }) {
                    Ok((blanked, waiting)) => {
                        erased |= blanked || forgets;
                        self.forgetting = waiting;
                    }
                    Err(err) => tracing::error!("could not erase forgotten conversations: {err:#}"),
                }
            }
            tx.commit()
        })();

        match &outcome {
            Ok(()) => {
                self.metrics.count_commit();
                self.metrics.add(tally)
            }
            Err(err) => tracing::error!(%err, "store commit failed; the batch is not stored"),
        }
        let wal_truncated = outcome.is_ok() && erased && forget::truncate_wal(&self.conn);
        self.faults.note(&kinds, &outcome, &own_faults, now_ms());
        for answer in answers {
            match answer {
                Pending::Ingest(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Claim(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Cancel(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Audit(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Prune(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Unit(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Count(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Replay(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Flag(reply, result) => drop(reply.send(settle(&outcome, result))),
                Pending::Forget(reply, mut result) => {
                    if let Ok(forgotten) = &mut result {
                        forgotten.wal_truncated = wal_truncated;
                    }
                    drop(reply.send(settle(&outcome, result)))
                }
            }
        }
        self.budget.measure(&self.conn);
        if outcome.is_ok() && created_deliveries {
            self.hints.note(&due_for);
            if due_everywhere {
                self.hints.note_everything();
            }
            let _ = self.new_work.try_send(());
        }
    }
}

/// A command's own result stands only if the transaction holding it committed; a failed
/// commit is [`StoreUnavailable`], which callers answer with 503.
fn settle<T>(
    commit: &crate::store::db::Result<()>,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    match commit {
        Ok(()) => result,
        Err(err) => Err(StoreUnavailable(format!("the commit failed: {err}")).into()),
    }
}

/// Runs `work` in a savepoint: on error only its own changes are rolled back.
fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    work: impl FnOnce(&Db) -> crate::store::db::Result<T>,
) -> anyhow::Result<T> {
    let savepoint = tx.savepoint()?;
    match work(&savepoint) {
        Ok(value) => {
            savepoint.commit()?;
            Ok(value)
        }
        Err(err) => Err(err.into()),
    }
}

mod admin_commands;
mod pings;
use admin_commands::admin;
mod start;
pub(super) use start::{load_paused, spawn};

#[cfg(test)]
mod tests;
