//! `posthorn serve`: starts every part of the data flow (store writer, HTTP inlet, spool,
//! scheduler, worker pool) and the reloader, hands SIGHUP to the reloader, and on SIGTERM
//! or SIGINT stops taking new work (the HTTP server first), lets in-flight attempts
//! finish within a bound, and exits cleanly.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;
use crate::deliver;
use crate::logging::{self, LogControl};
use crate::nodes::{Heartbeat, Identity, Roster};
use crate::reload::{Live, Reloader, Trigger};
use crate::retention::Pruner;
use crate::scheduler::{Scheduler, Stop};
use crate::spool::Spool;
use crate::store::nodes::Nodes;
use crate::store::sessions::Sessions;
use crate::store::side::SidePool;
use crate::store::{Location, Reader, ReaderPool, Store};
use crate::web;

/// Extra time beyond one attempt's timeout that shutdown waits for in-flight attempts.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(5);
/// How long after the first stop signal another one counts as a second.
const SECOND_SIGNAL_AFTER: Duration = Duration::from_millis(500);

pub fn serve(config: Config, log: LogControl) -> anyhow::Result<()> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("while installing signal handlers")?;
    log_startup(&config);

    let (new_work_tx, new_work_rx) = crossbeam_channel::bounded(1);
    let store = Store::open_at(&Location::from_config(&config.storage), new_work_tx.clone())?;
    // Before any input is taken: new deliveries of ordered subscriptions are lined up.
    store
        .handle()
        .set_ordered(crate::scheduler::ordered_subscriptions(
            &config.subscriptions,
        ));
    // Renamed while posthorn was stopped: the queue moves before anything is cancelled.
    let renames = config
        .subscriptions
        .iter()
        .filter_map(|s| Some((s.renamed_from.clone()?, s.name.clone())))
        .collect();
    let carried = store.handle().rename_subscriptions(renames)?;
    if carried > 0 {
        tracing::info!(
            carried,
            "carried deliveries of renamed subscriptions over (renamed_from)"
        );
    }
    let configured: Vec<String> = config
        .subscriptions
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let cancelled = store
        .handle()
        .cancel_removed_subscriptions(configured, "removed from the config before this start")?;
    if cancelled > 0 {
        tracing::warn!(
            cancelled,
            "cancelled pending deliveries of subscriptions no longer in the config"
        );
    }
    let positions = Reader::open(store.location().clone())?.spool_positions()?;
    store.handle().set_max_size(config.storage.max_size);
    let pruner = Pruner::start(store.handle(), config.retention.clone())
        .context("while starting the pruner")?;

    let live = Live::new(&config);
    let (spool, spool_control) = Spool::open(live.clone(), store.handle(), positions)?;

    let fd_limit = crate::fdlimit::raise();
    let connections = crate::fdlimit::connection_budget(
        fd_limit,
        config.delivery.workers,
        config.http.max_connections,
    );
    tracing::info!(
        open_files = ?fd_limit,
        max_connections = connections,
        "open file limit; HTTP connections are capped below it"
    );
    // Bound here, on this thread, so a taken port stops the start with a clear error.
    let side = SidePool::new(store.location().clone());
    let sessions = Sessions::new(side.clone());
    let identity = Identity::new(config.http.listen, config.delivery.workers);
    let roster = std::sync::Arc::new(Roster {
        this_node: identity.id.clone(),
        nodes: Nodes::new(side.clone()),
    });
    let heartbeat = Heartbeat::start(
        identity,
        Nodes::new(side),
        sessions.clone(),
        live.clone(),
        std::sync::Arc::clone(store.handle().metrics()),
        matches!(store.location(), Location::Sqlite(_)),
    )
    .context("while writing this node's first heartbeat")?;
    let listener = std::net::TcpListener::bind(config.http.listen).with_context(|| {
        format!(
            "while binding the HTTP inlet to [http] listen = \"{}\"; free the port or set \
             another address",
            config.http.listen
        )
    })?;
    let http = web::spawn(
        listener,
        web::AppState {
            store: store.handle(),
            live: live.clone(),
            inlet: std::sync::Arc::new(config.inlet.clone()),
            reader: ReaderPool::new(store.location().clone()),
            auth: std::sync::Arc::new(web::auth::Auth::new(
                &config.admin,
                admin_password_hash(&config, &store)?,
                sessions,
            )),
            guard: std::sync::Arc::new(web::guard::Guard::new(&config.http, connections)),
            roster,
        },
    )
    .context("while starting the HTTP server")?;

    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
    let (finished_tx, finished_rx) = crossbeam_channel::unbounded();
    let workers = deliver::spawn_workers(
        &config.delivery,
        jobs_rx,
        finished_tx,
        std::sync::Arc::clone(store.handle().metrics()),
    )
    .context("while starting delivery workers")?;
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let scheduler = Scheduler::new(store.handle(), live.clone(), jobs_tx)
        .with_store_reader(ReaderPool::new(store.location().clone()));
    let scheduler = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || scheduler.run(new_work_rx, finished_rx, stop_rx))?;
    let spool = std::thread::Builder::new()
        .name("spool".into())
        .spawn(move || spool.run())?;

    let (reload_tx, reload_rx) = crossbeam_channel::unbounded();
    let reloader = Reloader::new(config.clone(), live, store.handle(), log, new_work_tx);
    // Held so notifications keep flowing; without it SIGHUP still reloads.
    let _config_watcher = reloader.watch(reload_tx.clone()).unwrap_or_else(|err| {
        tracing::warn!("{err:#}; the config file is reloaded on SIGHUP only");
        None
    });
    let reloader = std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || reloader.run(reload_rx))?;
    tracing::info!("admin page: {}", admin_url(config.http.listen));
    tracing::info!("posthorn is running");

    let signal = signals
        .forever()
        .find(|&signal| {
            if signal == SIGHUP {
                let _ = reload_tx.send(Trigger::Signal);
            }
            signal != SIGHUP
        })
        .unwrap_or(SIGTERM);
    tracing::info!(
        signal = signal_name(signal),
        "stopping: no new work is taken; finishing attempts in flight"
    );
    // A second signal means "now": exit without waiting. One sent to the whole process
    // group (`timeout`, a shell's job control) can arrive twice in the same instant, so
    // only a signal well after the first counts as a second.
    let first_signal_at = Instant::now();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal != SIGHUP && first_signal_at.elapsed() >= SECOND_SIGNAL_AFTER {
                tracing::warn!(
                    "second signal: exiting at once; leased deliveries are retried at the next start"
                );
                std::process::exit(1);
            }
        }
    });

    // Input stops first: requests in flight get their answer, new ones are refused.
    http.stop();
    let _ = reload_tx.send(Trigger::Stop);
    let _ = reloader.join();
    spool_control.stop();
    let _ = spool.join();
    let _ = stop_tx.send(Stop {
        grace: config.longest_timeout() + SHUTDOWN_SLACK,
    });
    let _ = scheduler.join();
    // The scheduler held the only job sender, so idle workers end now; one still stuck
    // in an attempt past the grace period is left behind rather than waited for.
    for worker in workers {
        if worker.is_finished() {
            let _ = worker.join();
        }
    }
    pruner.stop();
    heartbeat.stop();
    store.close();
    tracing::info!("stopped");
    Ok(())
}

/// Where the store keeps the hash of a password it generated.
const GENERATED_HASH_KEY: &str = "admin_password_hash";

/// The admin password's hash: `[admin] password_hash`, else the one generated at an
/// earlier start, else a new password, printed once here and kept only as its hash.
fn admin_password_hash(config: &Config, store: &Store) -> anyhow::Result<String> {
    if let Some(hash) = &config.admin.password_hash {
        return Ok(hash.clone());
    }
    if let Some(hash) = Reader::open(store.location().clone())?.setting(GENERATED_HASH_KEY)? {
        tracing::info!(
            "admin page: using the password generated at the first start (set [admin] \
             password_hash to choose one)"
        );
        return Ok(hash);
    }
    let password = crate::password::generate();
    let hash = crate::password::hash(&password);
    store
        .handle()
        .put_setting_first(GENERATED_HASH_KEY, &hash)
        .context("while keeping the generated admin password's hash")?;
    // Nodes sharing a store that start together: the first one's password counts.
    let kept = Reader::open(store.location().clone())?.setting(GENERATED_HASH_KEY)?;
    if let Some(theirs) = kept.filter(|kept| *kept != hash) {
        tracing::info!(
            "admin page: using the password another node generated and printed at its \
             start (set [admin] password_hash to choose one)"
        );
        return Ok(theirs);
    }
    tracing::warn!(
        "admin page: no [admin] password_hash is configured, so posthorn made a password; \
         it is shown this once and only its hash is kept. Password: {password}"
    );
    Ok(hash)
}

fn log_startup(config: &Config) {
    match &config.source {
        Some(path) => {
            tracing::info!(config = %path.display(), "loaded configuration");
            if let Some(warning) = crate::config::exposure::warning(path) {
                tracing::warn!("{warning}");
            }
        }
        None => tracing::info!("no config file found; running on embedded defaults"),
    }
    tracing::info!(
        store = %config.storage.location(),
        spool = %config.spool.dir.display(),
        workers = config.delivery.workers,
        "starting"
    );
    tracing::info!(listen = %config.http.listen, "HTTP inlet: POST /v1/events");
    if config.inlet.token.is_none() {
        tracing::warn!(
            "no [inlet] token configured: POST /v1/events refuses every request (503); set \
             token, token_env or token_file under [inlet] to use it"
        );
    }
    for source in &config.inlet.sources {
        let unsigned = match &source.profile {
            crate::config::SourceProfile::Echo { secret } => secret.is_none(),
            crate::config::SourceProfile::Generic(generic) => {
                generic.verify == crate::config::Verify::None
            }
        };
        tracing::info!(name = %source.name, path = %format!("/v1/sources/{}", source.name), "inlet source");
        if unsigned {
            tracing::warn!(
                name = %source.name,
                "inlet source without a secret: anyone who can reach the HTTP address can post to it"
            );
        }
    }
    for warning in crate::config::advice::copied_secrets(config) {
        tracing::warn!("{warning}");
    }
    if config.subscriptions.is_empty() {
        tracing::warn!(
            "no subscriptions configured: events are stored but nothing is delivered; \
             add [[subscription]] blocks to the config file"
        );
    }
    for subscription in &config.subscriptions {
        tracing::info!(
            name = %subscription.name,
            url = %logging::url_for_log(&subscription.url),
            enabled = subscription.enabled,
            "subscription"
        );
        if let Some(refusal) =
            crate::egress::refused_literal(&subscription.url, &subscription.allow_networks)
        {
            tracing::warn!(
                name = %subscription.name,
                "every delivery to this subscription will be {refusal}"
            );
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Where the admin page is: the listen address, or this host's name in place of an
/// address that means "every interface".
fn admin_url(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        format!("http://<this host>:{}/admin/", listen.port())
    } else {
        format!("http://{listen}/admin/")
    }
}
