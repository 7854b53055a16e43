//! Live reload: the settings in force, shared by the spool (routing) and the scheduler
//! (which subscriptions to send, where, how), and replacing them from the config file on
//! SIGHUP or when the file changes.
//!
//! A reload reads and validates the whole file first; an invalid one is refused with the
//! same located messages as `check-config` and the running settings stay. A valid one is
//! compared with the running one: subscriptions added, removed and changed, and settings
//! that can only change at a restart (the store, the spool directory, the worker pool and
//! its timeout), which keep their running values and are reported. Attempts in flight keep
//! the subscription they were started with; the next attempt uses the new one. Each reload,
//! applied or refused, is logged and written to the `audit_log` table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use notify::Watcher as _;

use crate::config::{self, Config, DeliveryConfig, SpoolConfig, Subscription};
use crate::logging::{self, LogControl};
use crate::store::{AuditEntry, StoreHandle};

/// Quiet time after the last change to the config file before it is read: an editor's
/// save is several filesystem events (write a temp file, rename it, touch a backup).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a reload waits for the spool to finish routing a batch with the old
/// subscriptions before it cancels the removed ones.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// The settings in force at one moment. Replaced whole, never changed in place.
#[derive(Debug)]
pub struct Settings {
    pub subscriptions: Vec<Arc<Subscription>>,
    pub spool: SpoolConfig,
    pub delivery: DeliveryConfig,
    /// `delivery.schedule`, shared with the attempts that use it.
    pub schedule: Arc<[Duration]>,
    /// `config::fingerprint` of the config these come from, for the node's heartbeat.
    pub fingerprint: String,
}

impl Settings {
    fn from_config(config: &Config) -> Settings {
        Settings {
            subscriptions: config.subscriptions.iter().cloned().map(Arc::new).collect(),
            spool: config.spool.clone(),
            delivery: config.delivery.clone(),
            schedule: config.delivery.schedule.clone().into(),
            fingerprint: config::fingerprint(config),
        }
    }
}

/// The current [`Settings`], shared between threads. A reader takes a snapshot and keeps
/// it for as long as it needs consistent settings (the spool: one batch).
#[derive(Clone)]
pub struct Live(Arc<RwLock<Arc<Settings>>>);

impl Live {
    pub fn new(config: &Config) -> Live {
        Live(Arc::new(RwLock::new(Arc::new(Settings::from_config(
            config,
        )))))
    }

    pub fn load(&self) -> Arc<Settings> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `settings` in force and returns the ones they replace.
    fn replace(&self, settings: Settings) -> Arc<Settings> {
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, Arc::new(settings))
    }
}

/// What asks for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: always re-read (secret files may have changed even if the config did not).
    Signal,
    /// The config file changed on disk; debounced, and skipped if its text is unchanged.
    FileChanged,
    /// Stop the reloader.
    Stop,
}

impl Trigger {
    fn actor(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChanged => "config file change",
            Trigger::Stop => "stop",
        }
    }
}

/// Owns "load the new config, compare, apply".
pub struct Reloader {
    /// The config file; `None` when running on embedded defaults.
    path: Option<PathBuf>,
    /// The config in force, with restart-only settings at their running values.
    running: Config,
    /// The text last read, so a notification that changed nothing is ignored.
    last_text: Option<String>,
    live: Live,
    store: StoreHandle,
    log: LogControl,
    /// Wakes the scheduler after a reload, so a resumed subscription is sent at once.
    wake_scheduler: Sender<()>,
}

impl Reloader {
    pub fn new(
        running: Config,
        live: Live,
        store: StoreHandle,
        log: LogControl,
        wake_scheduler: Sender<()>,
    ) -> Reloader {
        let path = running.source.clone();
        let last_text = path
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        Reloader {
            path,
            running,
            last_text,
            live,
            store,
            log,
            wake_scheduler,
        }
    }

    /// Watches the config file's directory (editors replace the file by renaming a temp
    /// file over it, which a watch on the file itself would miss) and sends
    /// [`Trigger::FileChanged`] for each change to the file. `None` without a config file.
    pub fn watch(
        &self,
        triggers: Sender<Trigger>,
    ) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            return Ok(None);
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // Our own reads of the file must not count as changes.
                if is_read(&event.kind) {
                    return;
                }
                if event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str()))
                {
                    let _ = triggers.send(Trigger::FileChanged);
                }
            })
            .context("while setting up filesystem notifications for the config file")?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("while watching the config directory {}", dir.display()))?;
        Ok(Some(watcher))
    }

    /// Reloads on each trigger until [`Trigger::Stop`] (or every sender is gone).
    pub fn run(mut self, triggers: Receiver<Trigger>) {
        while let Ok(mut trigger) = triggers.recv() {
            if trigger == Trigger::FileChanged {
                // Wait for the file to settle; a signal meanwhile reloads at once.
                loop {
                    match triggers.recv_timeout(DEBOUNCE) {
                        Ok(Trigger::FileChanged) => continue,
                        Ok(other) => trigger = other,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    break;
                }
            }
            if trigger == Trigger::Stop {
                return;
            }
            self.reload(trigger);
        }
    }

    /// One reload: read, validate, compare, apply, log and audit.
    pub fn reload(&mut self, trigger: Trigger) {
        let Some(path) = self.path.clone() else {
            tracing::warn!(
                "reload asked for, but posthorn is running on embedded defaults without a \
                 config file; start it with --config to use reload"
            );
            return;
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) => {
                let problem = format!("{}: while reading the config file: {err}", path.display());
                self.refuse(trigger, &path, &[problem]);
                return;
            }
        };
        if trigger == Trigger::FileChanged && self.last_text.as_deref() == Some(text.as_str()) {
            tracing::debug!(config = %path.display(), "config file touched but unchanged");
            return;
        }
        self.last_text = Some(text.clone());
        match config::parse(&text, &path) {
            Ok(new) => self.apply(trigger, new),
            Err(err) => {
                let problems: Vec<String> = err.to_string().lines().map(String::from).collect();
                self.refuse(trigger, &path, &problems);
            }
        }
    }

    fn refuse(&self, trigger: Trigger, path: &Path, problems: &[String]) {
        // Audited before it is logged, so whoever reads the log finds the row.
        self.audit(trigger, problems.join("\n"), "refused");
        tracing::error!(
            config = %path.display(),
            trigger = trigger.actor(),
            "configuration reload refused; the running configuration stays in force"
        );
        for problem in problems {
            tracing::error!("{problem}");
        }
    }

    fn apply(&mut self, trigger: Trigger, new: Config) {
        let (applied, restart) = keep_restart_only(&self.running, new);
        let mut changes = diff(&self.running, &applied);

        if applied.log.level != self.running.log.level {
            match self.log.set_config_level(&applied.log.level) {
                Ok(true) => {}
                Ok(false) => changes.notes.push(format!(
                    "{} sets the log level; [log] level applies when it is unset",
                    logging::LEVEL_ENV
                )),
                Err(err) => tracing::error!("{err}"),
            }
        }

        let renames = note_renames(&mut changes, &self.running, &applied);
        let old = self.live.replace(Settings::from_config(&applied));
        if !changes.removed.is_empty() || !renames.is_empty() {
            // A batch the spool routed with the old subscriptions may still be on its way
            // to the store; cancelling (or renaming) before it lands would leave its
            // deliveries to a removed subscription pending. Wait until no one holds the
            // old settings.
            wait_until_released(&old);
            match self.store.rename_subscriptions(renames) {
                Ok(count) => changes.carried = count,
                Err(err) => tracing::error!(
                    "could not carry renamed subscriptions' deliveries over: {err:#}"
                ),
            }
        }
        if !changes.removed.is_empty() {
            let keep = applied
                .subscriptions
                .iter()
                .map(|s| s.name.clone())
                .collect();
            match self
                .store
                .cancel_removed_subscriptions(keep, "removed from the config at reload")
            {
                Ok(count) => changes.cancelled = count,
                Err(err) => tracing::error!(
                    "could not cancel the pending deliveries of removed subscriptions: {err:#}"
                ),
            }
        }
        drop(old);
        let _ = self.wake_scheduler.try_send(());

        let summary = changes.summary(&restart);
        self.audit(trigger, summary.clone(), "applied");
        tracing::info!(
            config = %applied.source.as_deref().unwrap_or(Path::new("")).display(),
            trigger = trigger.actor(),
            subscriptions = applied.subscriptions.len(),
            added = changes.added.len(),
            removed = changes.removed.len(),
            changed = changes.changed.len(),
            cancelled = changes.cancelled,
            "configuration reloaded: {summary}"
        );
        for subscription in &changes.added {
            if let Some(s) = applied
                .subscriptions
                .iter()
                .find(|s| &s.name == subscription)
            {
                tracing::info!(
                    name = %s.name,
                    url = %logging::url_for_log(&s.url),
                    enabled = s.enabled,
                    "subscription added"
                );
            }
        }
        if !restart.is_empty() {
            tracing::warn!(
                "changed settings that need a restart to apply (the running values stay): {}",
                restart.join(", ")
            );
        }
        self.running = applied;
    }

    fn audit(&self, trigger: Trigger, detail: String, result: &str) {
        let entry = AuditEntry {
            actor: trigger.actor().to_string(),
            action: "config.reload".to_string(),
            detail,
            result: result.to_string(),
            origin: None,
        };
        if let Err(err) = self.store.audit(entry) {
            tracing::error!("could not write the reload to the audit log: {err:#}");
        }
    }
}

/// Whether a notification is only someone reading the file (our own reload among them).
fn is_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

/// Waits (bounded) until `old` is held by no one but the caller.
fn wait_until_released(old: &Arc<Settings>) {
    let deadline = Instant::now() + RELEASE_WAIT;
    while Arc::strong_count(old) > 1 {
        if Instant::now() >= deadline {
            tracing::warn!(
                "the old subscriptions are still in use after {RELEASE_WAIT:?}; cancelling \
                 anyway (a delivery routed meanwhile is cancelled at the next start)"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `new`, with the settings that cannot change while running put back to their running
/// values, and the names of those that differed.
fn keep_restart_only(running: &Config, mut new: Config) -> (Config, Vec<String>) {
    let mut restart = Vec::new();
    // The whole [storage] section: the store is opened (and locked) once. Compared with
    // `==`, not as Debug text: that hides the database password, so a new one would pass
    // unnoticed.
    if running.storage != new.storage {
        restart.push("[storage]".to_string());
        new.storage = running.storage.clone();
    }
    // The pruner takes its settings when it starts.
    if format!("{:?}", running.retention) != format!("{:?}", new.retention) {
        restart.push("[retention]".to_string());
        new.retention = running.retention.clone();
    }
    if running.spool.dir != new.spool.dir {
        restart.push("spool.dir".to_string());
        new.spool.dir = running.spool.dir.clone();
    }
    if running.delivery.workers != new.delivery.workers {
        restart.push("delivery.workers".to_string());
        new.delivery.workers = running.delivery.workers;
    }
    // One HTTP client, built at start, holds the timeout; the scheduler's leases and the
    // shutdown grace follow from it.
    if running.delivery.timeout != new.delivery.timeout {
        restart.push("delivery.timeout".to_string());
        new.delivery.timeout = running.delivery.timeout;
    }
    // The HTTP server binds once, and the inlet's token and sources are handed to it at
    // start. Compared with `==`: their Debug output hides the secrets.
    if running.http != new.http {
        restart.push("[http]".to_string());
        new.http = running.http.clone();
    }
    if running.inlet != new.inlet {
        restart.push("[inlet]".to_string());
        new.inlet = running.inlet.clone();
    }
    (new, restart)
}

/// What a reload changes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    added: Vec<String>,
    removed: Vec<String>,
    /// Each changed subscription with what changed in it.
    changed: Vec<(String, Vec<&'static str>)>,
    /// Settings outside the subscriptions that take effect now.
    settings: Vec<&'static str>,
    notes: Vec<String>,
    cancelled: usize,
    /// `renamed_from`: (old, new) pairs applied at this reload.
    renamed: Vec<(String, String)>,
    /// Deliveries the renames carried over.
    carried: usize,
}

impl Changes {
    /// One line for the log and the audit row. Names what changed, never a secret.
    fn summary(&self, restart: &[String]) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}", self.added.join(", ")));
        }
        if !self.renamed.is_empty() {
            let pairs: Vec<String> = self
                .renamed
                .iter()
                .map(|(old, new)| format!("{old} to {new}"))
                .collect();
            parts.push(format!(
                "renamed {} ({} deliver{} carried over)",
                pairs.join(", "),
                self.carried,
                if self.carried == 1 { "y" } else { "ies" }
            ));
        }
        if !self.removed.is_empty() {
            parts.push(format!(
                "removed {} ({} pending deliver{} cancelled)",
                self.removed.join(", "),
                self.cancelled,
                if self.cancelled == 1 { "y" } else { "ies" }
            ));
        }
        for (name, what) in &self.changed {
            parts.push(format!("changed {name} ({})", what.join(", ")));
        }
        if !self.settings.is_empty() {
            parts.push(format!("settings changed: {}", self.settings.join(", ")));
        }
        if !restart.is_empty() {
            parts.push(format!("needs a restart: {}", restart.join(", ")));
        }
        parts.extend(self.notes.iter().cloned());
        if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join("; ")
        }
    }
}

fn diff(old: &Config, new: &Config) -> Changes {
    let mut changes = Changes::default();
    let find = |config: &Config, name: &str| {
        config
            .subscriptions
            .iter()
            .position(|s| s.name == name)
            .map(|i| config.subscriptions[i].clone())
    };
    for subscription in &new.subscriptions {
        match find(old, &subscription.name) {
            None => changes.added.push(subscription.name.clone()),
            Some(before) if before != *subscription => changes.changed.push((
                subscription.name.clone(),
                what_changed(&before, subscription),
            )),
            Some(_) => {}
        }
    }
    for subscription in &old.subscriptions {
        if find(new, &subscription.name).is_none() {
            changes.removed.push(subscription.name.clone());
        }
    }
    let settings = [
        (
            "spool.keep_done",
            old.spool.keep_done != new.spool.keep_done,
        ),
        (
            "spool.max_event_bytes",
            old.spool.max_event_bytes != new.spool.max_event_bytes,
        ),
        (
            "spool.max_file_bytes",
            old.spool.max_file_bytes != new.spool.max_file_bytes,
        ),
        (
            "spool.rescan_interval",
            old.spool.rescan_interval != new.spool.rescan_interval,
        ),
        (
            "delivery.schedule",
            old.delivery.schedule != new.delivery.schedule,
        ),
        (
            "delivery.max_in_flight_per_endpoint",
            old.delivery.max_in_flight_per_endpoint != new.delivery.max_in_flight_per_endpoint,
        ),
        (
            "delivery.allow_networks",
            old.delivery.allow_networks != new.delivery.allow_networks,
        ),
        ("log.level", old.log.level != new.log.level),
        (
            "delivery.enabled",
            old.delivery.enabled != new.delivery.enabled,
        ),
        (
            "delivery.auto_pause_after",
            old.delivery.auto_pause_after != new.delivery.auto_pause_after,
        ),
        (
            "delivery.breaker_after",
            old.delivery.breaker_after != new.delivery.breaker_after,
        ),
        (
            "delivery.breaker_backoff",
            old.delivery.breaker_backoff != new.delivery.breaker_backoff,
        ),
        (
            "delivery TLS or proxy",
            old.delivery.transport != new.delivery.transport,
        ),
    ];
    changes.settings = settings
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect();
    changes
}

/// The parts of a subscription that differ, by name. A secret is only said to have
/// changed.
/// The `renamed_from` pairs this reload applies: those not in force before. A rename
/// whose old name was running shows as renamed, not as one added and one removed.
fn note_renames(changes: &mut Changes, old: &Config, new: &Config) -> Vec<(String, String)> {
    let pairs = |config: &Config| -> Vec<(String, String)> {
        config
            .subscriptions
            .iter()
            .filter_map(|s| Some((s.renamed_from.clone()?, s.name.clone())))
            .collect()
    };
    let before = pairs(old);
    let fresh: Vec<(String, String)> = pairs(new)
        .into_iter()
        .filter(|pair| !before.contains(pair))
        .collect();
    for (from, to) in &fresh {
        if changes.removed.contains(from) {
            changes.removed.retain(|name| name != from);
            changes.added.retain(|name| name != to);
            changes.changed.retain(|(name, _)| name != to);
        }
        changes.renamed.push((from.clone(), to.clone()));
    }
    fresh
}

fn what_changed(old: &Subscription, new: &Subscription) -> Vec<&'static str> {
    let mut what = Vec::new();
    if old.url != new.url {
        what.push("url");
    }
    if old.signing != new.signing {
        what.push("secret or signature");
    }
    if old.conversations != new.conversations
        || old.projects != new.projects
        || old.events != new.events
    {
        what.push("scope");
    }
    if old.headers != new.headers {
        what.push("headers");
    }
    if old.allow_networks != new.allow_networks {
        what.push("allow_networks");
    }
    if old.timeout != new.timeout {
        what.push("timeout");
    }
    if old.auto_pause_after != new.auto_pause_after {
        what.push("auto_pause_after");
    }
    if old.renamed_from != new.renamed_from {
        what.push("renamed_from");
    }
    if old.transport.tls != new.transport.tls || old.transport.proxy != new.transport.proxy {
        what.push("TLS or proxy");
    }
    if old.transport.auth != new.transport.auth {
        what.push("auth");
    }
    match (old.enabled, new.enabled) {
        (true, false) => what.push("paused"),
        (false, true) => what.push("resumed"),
        _ => {}
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER_SECRET: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn parsed(text: &str) -> Config {
        config::parse(text, Path::new("/etc/posthorn/config.toml"))
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn sub(name: &str, url: &str, secret: &str, extra: &str) -> String {
        format!(
            "[[subscription]]\nname = {name:?}\nurl = {url:?}\nconversations = [\"*\"]\n\
             events = [\"*\"]\nsecret = {secret:?}\n{extra}\n"
        )
    }

    #[test]
    fn a_reload_names_what_was_added_removed_and_changed_but_no_secret() {
        let old = parsed(&format!(
            "{}{}{}",
            sub("keep", "http://a/", SECRET, ""),
            sub("gone", "http://b/", SECRET, ""),
            sub("moved", "http://c/", SECRET, ""),
        ));
        let new = parsed(&format!(
            "[delivery]\nschedule = [\"1s\"]\n{}{}{}",
            sub("keep", "http://a/", SECRET, "enabled = false"),
            sub("moved", "http://d/", OTHER_SECRET, ""),
            sub("fresh", "http://e/", SECRET, ""),
        ));
        let changes = diff(&old, &new);
        assert_eq!(changes.added, ["fresh"]);
        assert_eq!(changes.removed, ["gone"]);
        assert_eq!(
            changes.changed,
            [
                ("keep".to_string(), vec!["paused"]),
                ("moved".to_string(), vec!["url", "secret or signature"]),
            ]
        );
        assert_eq!(changes.settings, ["delivery.schedule"]);
        let summary = changes.summary(&[]);
        assert_eq!(
            summary,
            "added fresh; removed gone (0 pending deliveries cancelled); changed keep (paused); \
             changed moved (url, secret or signature); settings changed: delivery.schedule"
        );
        assert!(!summary.contains("whsec_"));
    }

    #[test]
    fn a_reload_names_receiver_health_settings() {
        let old = parsed(&sub("s", "http://a/", SECRET, ""));
        let new = parsed(&format!(
            "[delivery]\nenabled = false\nbreaker_after = 2\n{}",
            sub(
                "s",
                "http://a/",
                SECRET,
                "timeout = \"5s\"\nauto_pause_after = \"1h\""
            )
        ));
        let changes = diff(&old, &new);
        assert_eq!(
            changes.changed,
            [("s".to_string(), vec!["timeout", "auto_pause_after"])]
        );
        assert_eq!(
            changes.settings,
            ["delivery.enabled", "delivery.breaker_after"]
        );
    }

    #[test]
    fn settings_that_need_a_restart_keep_their_running_values() {
        let old = parsed("[spool]\ndir = \"/srv/a\"\n[delivery]\nworkers = 4\n");
        let new = parsed(
            "[storage]\npath = \"/srv/other.db\"\n[retention]\ndelivered = \"1d\"\n\
             [spool]\ndir = \"/srv/b\"\nkeep_done = true\n\
             [delivery]\nworkers = 8\ntimeout = \"5s\"\nmax_in_flight_per_endpoint = 2\n",
        );
        let (applied, restart) = keep_restart_only(&old, new);
        assert_eq!(
            restart,
            [
                "[storage]",
                "[retention]",
                "spool.dir",
                "delivery.workers",
                "delivery.timeout"
            ]
        );
        assert_eq!(applied.storage.path, old.storage.path);
        assert_eq!(applied.retention, old.retention);
        assert_eq!(applied.spool.dir, old.spool.dir);
        assert_eq!(applied.delivery.workers, 4);
        assert_eq!(applied.delivery.timeout, old.delivery.timeout);
        // The rest applies.
        assert!(applied.spool.keep_done);
        assert_eq!(applied.delivery.max_in_flight_per_endpoint, 2);
        assert_eq!(diff(&applied, &applied), Changes::default());
        assert_eq!(Changes::default().summary(&[]), "no changes");
    }

    #[test]
    fn http_and_inlet_changes_need_a_restart_even_when_only_a_secret_changed() {
        let old = parsed("[inlet]\ntoken = \"token-number-one-0123\"\n");
        let new = parsed(
            "[http]\nlisten = \"127.0.0.1:9\"\n[inlet]\ntoken = \"token-number-two-0123\"\n",
        );
        let (applied, restart) = keep_restart_only(&old, new);
        assert_eq!(restart, ["[http]", "[inlet]"]);
        assert_eq!(applied.inlet, old.inlet);
        assert_eq!(applied.http, old.http);
    }

    #[test]
    fn a_new_database_password_needs_a_restart_though_debug_hides_it() {
        let at = |password: &str| {
            parsed(&format!(
                "[storage]\nbackend = \"postgres\"\nurl = \"postgres://p:{password}@db/p\"\n"
            ))
        };
        let old = at("password-one");
        let (applied, restart) = keep_restart_only(&old, at("password-two"));
        assert_eq!(restart, ["[storage]"]);
        assert_eq!(applied.storage, old.storage);
    }

    #[test]
    fn a_reader_keeps_its_snapshot_across_a_replace() {
        let live = Live::new(&parsed(&sub("one", "http://a/", SECRET, "")));
        let held = live.load();
        let old = live.replace(Settings::from_config(&parsed("")));
        assert_eq!(held.subscriptions.len(), 1);
        assert!(live.load().subscriptions.is_empty());
        assert_eq!(Arc::strong_count(&old), 2);
        drop(held);
        wait_until_released(&old);
        assert_eq!(Arc::strong_count(&old), 1);
    }
}
