//! `redrive server`: the engine running continuously behind the HTTP APIs.

use crate::config::{ServerConfig, load_config, report_config_error};
use crate::exit;
use crate::run::DEFAULT_DB;
use anyhow::Context;
use redrive_api::server::Tls;
use redrive_api::server::{HttpLimits, MAX_CONNECTIONS_PERCENT_OF_NOFILE, bind, connection_cap, raise_open_file_limit};
use redrive_api::switch::{StatusSource, Switch};
use redrive_core::time::human_duration_ms;
use redrive_engine::health::Health;
use redrive_engine::redrive::RedriveSchedule;
use redrive_engine::runner::secrets::Secrets;
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, EngineHandle, SystemClock};
use redrive_store::postgres::DEFAULT_HEARTBEAT;
use redrive_store::{AnyStore, ExecutionCursor, ExecutionFilter, PostgresOptions, Store, StoreLocation, StoreOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How the servers on one PostgreSQL database share the work (`--cluster-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterMode {
    /// The executions spread over the servers by shard.
    Spread,
    /// One server leads and drives every execution; the others stand by.
    Standby,
}

impl ServerArgs {
    /// The mode asked for, or the store's default: spread on PostgreSQL, and
    /// none (one engine) on SQLite, where asking for one is an error.
    fn cluster_mode(&self) -> Result<Option<ClusterMode>, ConfigRejected> {
        let asked = if self.spread { Some(ClusterMode::Spread) } else { self.cluster_mode };
        match (&self.db, asked) {
            (StoreLocation::Postgres(_), asked) => Ok(Some(asked.unwrap_or(ClusterMode::Spread))),
            (_, None) => Ok(None),
            (_, Some(_)) => Err(ConfigRejected(
                "--cluster-mode and --spread need a PostgreSQL store (--db postgres://...): a SQLite file has one engine".into(),
            )),
        }
    }
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to listen on. Only a loopback address is accepted unless the
    /// config file has an `auth:` section (credentials required) or
    /// `--insecure-no-auth` is given.
    #[arg(long, value_name = "ADDR", env = "REDRIVE_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Listen on a non-loopback address although the server authenticates no
    /// one: anyone who reaches the port can create pipelines whose actions run
    /// programs as this user. Only behind something that authenticates.
    #[arg(long)]
    insecure_no_auth: bool,
    /// The store: a SQLite file (created if missing) or a PostgreSQL database,
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (schema created on first use).
    #[arg(long, value_name = "PATH|URL", env = "REDRIVE_DB", default_value = DEFAULT_DB)]
    db: StoreLocation,
    /// The URL other `redrive server`s sharing a PostgreSQL store reach this one
    /// at (followers forward requests to the leader's). Default: http:// and the
    /// address it listens on.
    #[arg(long, value_name = "URL", env = "REDRIVE_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// With a PostgreSQL store: how long the engine lease lasts without a
    /// renewal. A leader that stalls this long (stopped, paused, cut off from
    /// the database) is taken over by a follower; one that dies is taken over
    /// within a heartbeat (a fifth of this, at most 1 s).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_seconds: u64,
    /// A host name clients use to reach this server (repeatable). Requests whose
    /// `Host` header names anything else than an IP address, `localhost`, the
    /// `--advertise-url` host or one of these get 403, so that a web page on a
    /// name its attacker points at this machine cannot use the API (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "NAME", env = "REDRIVE_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Request bodies larger than this get HTTP 413.
    #[arg(long, value_name = "BYTES", default_value_t = redrive_api::server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// With a PostgreSQL store, how the servers on the database share the work.
    /// `spread` (the default): the executions are spread over the servers by
    /// shard (a fixed hash of the pipeline's or function's name; 16 shards);
    /// each drives about an even share of the shards and forwards the requests
    /// for the others to their holders; a server that dies or stalls has its
    /// shards taken over (within a few heartbeats, or the lease if it stalled).
    /// `standby`: one server leads and drives every execution while the others
    /// forward to it and stand by. Give every server of a database the same
    /// mode: the two exclude each other.
    #[arg(long, value_enum, value_name = "MODE", env = "REDRIVE_CLUSTER_MODE")]
    cluster_mode: Option<ClusterMode>,
    /// `--cluster-mode spread` (the default with PostgreSQL).
    #[arg(long, conflicts_with = "cluster_mode")]
    spread: bool,
    /// On SIGTERM/SIGINT, how long running attempts may take to finish before the
    /// server exits (they are retried as Step.SERVICE_FAULT after a restart).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    grace_seconds: u64,
    /// Server config file (YAML or JSON). It holds `redriveSchedules`: scheduled
    /// redrives of every dead-letter queue under a prefix, e.g.
    /// `{name: retry-sweeper, every: 30m, queuePrefix: retry-, filters: {type: Step.THROTTLING,
    /// source: orders}, olderThan: 10m, maxEntries: 1000, rate: 50/s, mode: retry-stage}`
    /// (rate defaults to 100/s, mode to retry-stage; poison entries are never
    /// redriven by a schedule), and `http`: the connection limits, e.g.
    /// `{headerReadTimeout: 10s, bodyReadTimeout: 30s, maxConnections: 1024}`
    /// (those are the defaults). An invalid file is reported in full and the
    /// server does not start (exit 2).
    #[arg(long, value_name = "FILE", env = "REDRIVE_CONFIG")]
    config: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (leaf first), with --tls-key.
    #[arg(long, value_name = "FILE", env = "REDRIVE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", env = "REDRIVE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where command actions' `secretEnv` values come from instead of the
    /// server's environment: `NAME=value` lines (`#` comments), read at each
    /// attempt. It must be a regular file of this user, mode 0600 (or stricter).
    #[arg(long, value_name = "FILE", env = "REDRIVE_SECRETS_FILE")]
    secrets_file: Option<PathBuf>,
}

pub fn server(args: ServerArgs) -> u8 {
    // The config is checked before anything is opened: a bad file starts nothing.
    let config = match &args.config {
        Some(path) => match load_config(path) {
            Ok(c) => c,
            Err(e) => return report_config_error(path, &e),
        },
        None => ServerConfig::default(),
    };
    // So is the secrets file (its mode and syntax; values are read per attempt).
    let secrets = match &args.secrets_file {
        Some(path) => match Secrets::file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID_INPUT;
            }
        },
        None => Secrets::Environment,
    };
    // So is the exposure: a refused start creates nothing.
    if let Err(why) = check_exposure(args.listen, args.insecure_no_auth, config.auth.is_some()) {
        eprintln!("error: {why}");
        return exit::INVALID_INPUT;
    }
    // So is the TLS certificate: a bad file starts nothing.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match Tls::load(cert, key) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID_INPUT;
            }
        },
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(serve(args, config, tls, secrets)) {
        Ok(()) => exit::SUCCEEDED,
        Err(e) if e.downcast_ref::<ConfigRejected>().is_some() => {
            eprintln!("error: {e:#}");
            exit::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::for_error(&e)
        }
    }
}

/// The service refused the config's schedules (its checks go beyond the file's).
#[derive(Debug)]
struct ConfigRejected(String);

impl std::fmt::Display for ConfigRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigRejected {}

/// Whether requests need credentials, for the start-up line.
fn auth_note(auth: Option<&redrive_api::auth::AuthConfig>) -> String {
    match auth {
        None => "no authentication (no auth: in --config)".to_string(),
        Some(a) => format!(
            "credentials required: bearer tokens and {} AWS access key{}",
            a.access_keys.len(),
            if a.access_keys.len() == 1 { "" } else { "s" }
        ),
    }
}

/// `; 1 redrive schedule (retry-sweeper every 30m on retry-*)`.
fn schedules_note(schedules: &[RedriveSchedule]) -> String {
    if schedules.is_empty() {
        return String::new();
    }
    let shown: Vec<String> =
        schedules.iter().take(5).map(|s| format!("{} every {} on {}*", s.name, human_duration_ms(s.every_ms), s.prefix())).collect();
    let more = if schedules.len() > 5 { format!(", {} more", schedules.len() - 5) } else { String::new() };
    format!("; {} redrive schedule{} ({}{more})", schedules.len(), if schedules.len() == 1 { "" } else { "s" }, shown.join(", "))
}

/// Without authentication the server serves loopback only; `--insecure-no-auth`
/// overrides that, loudly. With `auth:` configured it may listen anywhere.
fn check_exposure(listen: SocketAddr, insecure_no_auth: bool, authenticated: bool) -> Result<(), String> {
    if listen.ip().is_loopback() || authenticated {
        return Ok(());
    }
    if !insecure_no_auth {
        return Err(format!(
            "refusing to listen on {listen}: without an `auth:` section in --config the server authenticates no one, \
             and anyone who reaches the port can create pipelines whose actions run programs as this user. Add \
             `auth: {{}}` to the config file and create a token with `redrive token create --db DB --name admin --scope admin` \
             (see docs/security.md), listen on loopback (the default, 127.0.0.1:7878), or pass --insecure-no-auth to \
             expose it anyway"
        ));
    }
    let warning =
        format!("listening on {listen} with NO AUTHENTICATION (--insecure-no-auth): anyone who reaches it can run programs as this user");
    eprintln!("WARNING: {warning}");
    tracing::warn!("{warning}");
    Ok(())
}

async fn serve(args: ServerArgs, config: ServerConfig, tls: Option<Tls>, secrets: Secrets) -> anyhow::Result<()> {
    // Before anything is opened: a refused mode changes nothing.
    let mode = args.cluster_mode()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let limits = http_limits(&args, &config, tls);
    let lease = std::time::Duration::from_secs(args.lease_seconds);
    let postgres = PostgresOptions { lease, heartbeat: (lease / 5).min(DEFAULT_HEARTBEAT), ..Default::default() };
    let options = StoreOptions { postgres, ..Default::default() };
    let store = Arc::new(AnyStore::open_member(&args.db, options.clone()).await.with_context(|| format!("opening {}", args.db))?);
    if mode == Some(ClusterMode::Spread) {
        let sdk = store.shard_holders_of_other_kinds().await.with_context(|| format!("reading the members of {}", args.db))?;
        anyhow::ensure!(
            sdk.is_empty(),
            "the shards of {} are held by SDK process(es) {} running durable functions: servers and SDK processes cannot \
             share a database's shards (a server cannot run a function's steps); give the servers their own database",
            args.db,
            sdk.join(", ")
        );
    }
    let listener = bind(args.listen).with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let url = args.advertise_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
    store.announce(&url).await.with_context(|| format!("announcing this process in {}", args.db))?;
    let follower_auth =
        config.auth.clone().map(|auth| redrive_api::auth::follower_check(store.clone(), Arc::new(auth), Arc::new(SystemClock)));
    let switch = Switch::with_auth(redrive_store::member_id(), status_source(store.clone()), follower_auth);
    // HTTP stops when this is set (a signal, or the engine stopped for good).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut listener = Some(listener);
    let mut serve_http = |limits: HttpLimits| {
        let listener = listener.take().expect("HTTP is served once");
        let mut stopped = stopped.clone();
        let until = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tokio::spawn(redrive_api::server::serve_router(switch.router(), listener, limits, until))
    };
    let signal = shutdown_signal();
    tokio::pin!(signal);

    if mode == Some(ClusterMode::Spread) {
        let http = serve_http(limits.clone());
        let (db, auth_text) = (args.db.clone(), auth_note(config.auth.as_ref()));
        // Announced once the first heartbeat took this process's share (all the
        // shards for the first process): its requests are served from then on.
        let ready = move |shards: usize| {
            tracing::info!(
                listen = %format_args!("{scheme}://{local}"), store = %db, role = "sharded", shards,
                "redrive server listening on {scheme}://{local} (store {db}; spreading the executions over the servers on it by shard, {shards} of {} held here; {auth_text})",
                redrive_core::shard::SHARD_COUNT
            );
        };
        let secure_cookies = limits.tls.is_some();
        let auth = config.auth.map(|auth| Arc::new(redrive_api::auth::AuthConfig { secure_cookies, ..auth }));
        let peers = crate::peer::Peers::new(store.clone(), auth.as_deref(), options.postgres.lease);
        let ctx = crate::spread::SpreadContext {
            store: store.clone(),
            options: options.clone(),
            driver_config: DriverConfig {
                secrets: Arc::new(secrets),
                dependencies: Arc::from(config.dependencies.clone()),
                http_redirects: config.http_redirects,
                // One set of figures for all the shards' engines of this process.
                metrics: Some(Arc::default()),
                ..DriverConfig::default()
            },
            schedules: config.schedules,
            auth,
            max_body_bytes: limits.max_body_bytes,
            sweep: config.sweep,
            grace: std::time::Duration::from_secs(args.grace_seconds),
            switch: switch.clone(),
            engines: Default::default(),
            peers,
        };
        crate::spread::drive(ctx, ready, async move {
            signal.await;
        })
        .await?;
        let _ = stop.send(true);
        http.await.context("HTTP task")?.context("serving HTTP")?;
        return Ok(());
    }

    // A process that cannot lead at once (another one does) serves by
    // forwarding to the leader, and takes over when the leader's lease lapses.
    let (http, took_over) = if store.try_lead().await.context("taking the store's engine lease")? {
        (None, false)
    } else {
        let http = serve_http(limits.clone());
        let leader = store.leader_url().await.ok().flatten();
        switch.follow(leader.clone());
        tracing::info!(
            listen = %format_args!("{scheme}://{local}"), store = %args.db, role = "follower",
            "redrive server listening on {scheme}://{local} (store {}; following: another process leads{}; this one takes over if its lease lapses)",
            args.db,
            leader.map(|l| format!(" at {l}")).unwrap_or_default()
        );
        loop {
            tokio::select! {
                _ = &mut signal => {
                    let _ = stop.send(true);
                    http.await.context("HTTP task")?.context("serving HTTP")?;
                    return Ok(());
                }
                _ = tokio::time::sleep(store.heartbeat()) => {}
            }
            match store.try_lead().await {
                Ok(true) => break,
                Ok(false) => switch.follow(store.leader_url().await.ok().flatten()),
                Err(e) => {
                    tracing::warn!(error = %e, "the store cannot be reached to check the lease");
                    switch.follow(None);
                }
            }
        }
        (Some(http), true)
    };

    let driver_config = DriverConfig {
        secrets: Arc::new(secrets),
        dependencies: Arc::from(config.dependencies.clone()),
        http_redirects: config.http_redirects,
        ..DriverConfig::default()
    };
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), driver_config);
    let (resumed, quarantined) = resume_unfinished(&store, &handle).await?;
    let mut service = Service::new(store.clone(), handle.clone(), Arc::new(SystemClock));
    let schedules_text = schedules_note(&config.schedules);
    let auth_text = auth_note(config.auth.as_ref());
    // The console's session cookie is marked Secure when served over HTTPS.
    let secure_cookies = limits.tls.is_some();
    let auth = config.auth.map(|auth| Arc::new(redrive_api::auth::AuthConfig { secure_cookies, ..auth }));
    if let Err(e) = service.set_schedules(config.schedules) {
        let file = args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        return Err(ConfigRejected(format!("config file {file}: redriveSchedules: {e}")).into());
    }
    let service = Arc::new(service);
    // Redrive runs a dead process left RUNNING are marked INTERRUPTED; then the
    // schedules start.
    let interrupted = service.start_schedules().await.context("starting the redrive schedules")?;
    let sweeper = redrive_engine::retention::spawn_sweeper(store.clone(), handle.clone(), Arc::new(SystemClock), config.sweep);
    let interrupted_text = match interrupted {
        0 => String::new(),
        1 => "; 1 redrive run left running by the previous process marked INTERRUPTED".to_string(),
        n => format!("; {n} redrive runs left running by the previous process marked INTERRUPTED"),
    };
    let quarantined_text = match quarantined {
        0 => String::new(),
        n => format!("; {n} with an unreadable state failed as Engine.CORRUPT_STATE"),
    };
    switch.lead(redrive_api::server::app_with_auth(service, limits.max_body_bytes, auth));
    let http = match http {
        Some(http) => http,
        None => serve_http(limits),
    };
    let what = if took_over { "took over as the leader" } else { "redrive server listening on" };
    tracing::info!(
        listen = %format_args!("{scheme}://{local}"), store = %args.db, role = "leader", resumed,
        "{what} {scheme}://{local} (store {}; {resumed} unfinished execution{} resumed{quarantined_text}{schedules_text}{interrupted_text}; {auth_text}; CodePipeline API on POST /, native API under /v1, OpenAPI at /openapi.json)",
        args.db,
        if resumed == 1 { "" } else { "s" }
    );
    // Serve until a signal, or until the engine stops for good: then the
    // process exits non-zero with the reason, so a supervisor restarts it —
    // never a server that answers while its engine is dead.
    let mut health = handle.health_watch();
    // A leader that was taken over (it stalled past its lease) stops at once,
    // even if it has nothing to write: every write it tried would be refused.
    let taken_over = async {
        loop {
            tokio::time::sleep(store.heartbeat()).await;
            if let Some(reason) = store.lost_reason() {
                return reason;
            }
        }
    };
    let lost = tokio::select! {
        _ = &mut signal => None,
        _ = health.wait_for(|h| matches!(h, Health::Stopped { .. })) => None,
        reason = taken_over => Some(reason),
    };
    let _ = stop.send(true);
    sweeper.abort();
    http.await.context("HTTP task")?.context("serving HTTP")?;
    if let Some(reason) = lost {
        handle.shutdown().await;
        anyhow::bail!("this process no longer leads the store: {reason}");
    }
    if let Health::Stopped { reason } = handle.health() {
        let _ = join.await;
        anyhow::bail!("the engine stopped: {reason}");
    }

    tracing::info!(
        grace_seconds = args.grace_seconds,
        "shutting down: no new attempts start; waiting up to {}s for running attempts",
        args.grace_seconds
    );
    drain_within(&handle, join, std::time::Duration::from_secs(args.grace_seconds)).await
}

/// How long a shutdown waits, past its grace, for the store to take the last
/// changes (it may be down): then the process exits without them.
pub(crate) const SHUTDOWN_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Drains an engine — running attempts get `grace` — and waits for it to end,
/// for at most `grace` + [`SHUTDOWN_COMMIT_WAIT`]. Past that (the store does
/// not accept the last commits) it gives up: none of those changes was
/// acknowledged (their callers got no answer) and the next start recovers what
/// they would have recorded, as after a kill -9.
pub(crate) async fn drain_within(
    handle: &EngineHandle,
    join: tokio::task::JoinHandle<Result<(), redrive_engine::EngineError>>,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let drained = async {
        let left = handle.drain(grace).await.unwrap_or(0);
        if left > 0 {
            tracing::warn!(
                abandoned = left,
                "{left} attempt(s) still running were abandoned; they are retried as Step.SERVICE_FAULT after a restart"
            );
        }
        join.await.context("engine task")?.map_err(anyhow::Error::from)
    };
    match tokio::time::timeout(grace + SHUTDOWN_COMMIT_WAIT, drained).await {
        Ok(done) => done,
        Err(_) => anyhow::bail!(
            "the store did not take the last changes within {} s of the grace (is it down?); exiting without them: none was \
             acknowledged, and the next start recovers what they would have recorded (attempts in flight run again as \
             Step.SERVICE_FAULT)",
            SHUTDOWN_COMMIT_WAIT.as_secs()
        ),
    }
}

/// Continuity: every unfinished execution is taken over (in-flight attempts of
/// the previous process are recovered as Step.SERVICE_FAULT). Returns (resumed,
/// quarantined).
pub(crate) async fn resume_unfinished(store: &Arc<AnyStore>, handle: &EngineHandle) -> anyhow::Result<(usize, usize)> {
    let (mut resumed, mut quarantined) = (0usize, 0usize);
    let mut before: Option<ExecutionCursor> = None;
    loop {
        let page = store
            .list_executions(ExecutionFilter { unfinished_only: true, before: before.clone(), limit: 0, ..Default::default() })
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(ExecutionCursor { created_at: last.created_at, id: last.id.clone() });
        // A page at once: the driver batches the resumes (their reads run
        // together, their recoveries share commits) instead of one round trip each.
        let mut resuming = tokio::task::JoinSet::new();
        for e in &page {
            let (handle, id) = (handle.clone(), e.id.clone());
            resuming.spawn(async move { (handle.resume(&id).await, id) });
        }
        while let Some(done) = resuming.join_next().await {
            let (result, id) = done.context("resuming task")?;
            match result {
                Ok(()) | Err(redrive_engine::EngineError::AlreadyFinished { .. }) => resumed += 1,
                // A durable function's execution: only a process that registers the
                // function (through the Rust SDK) can continue it.
                Err(redrive_engine::EngineError::FunctionNotRegistered(_)) => {}
                // Unreadable: failed with Engine.CORRUPT_STATE; the others go on.
                Err(redrive_engine::EngineError::Quarantined { .. }) => quarantined += 1,
                Err(err) => return Err(err).with_context(|| format!("resuming execution {id}")),
            }
        }
    }
    Ok((resumed, quarantined))
}

/// What a follower answers `GET /v1/cluster` with: read from the store.
fn status_source(store: Arc<AnyStore>) -> StatusSource {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            let now = redrive_engine::Clock::now(&SystemClock);
            redrive_api::cluster::read_status(store.as_ref(), now).await.map_err(|e| e.to_string())
        })
    })
}

/// The HTTP limits from the flags and the config file, after raising the
/// open-file limit so that the connection cap fits under it.
fn http_limits(args: &ServerArgs, config: &ServerConfig, tls: Option<Tls>) -> HttpLimits {
    if let Err(e) = raise_open_file_limit() {
        tracing::warn!("could not raise the open-file limit: {e}");
    }
    let wanted = config.http.max_connections;
    let max_connections = connection_cap(wanted);
    if max_connections < wanted {
        tracing::warn!(
            "at most {max_connections} connections (not {wanted}): {MAX_CONNECTIONS_PERCENT_OF_NOFILE}% of the open-file limit (ulimit -n)"
        );
    }
    let mut allowed_hosts = args.allowed_hosts.clone();
    if let Some(host) =
        args.advertise_url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_string))
    {
        allowed_hosts.push(host);
    }
    HttpLimits {
        tls,
        allowed_hosts,
        max_body_bytes: args.max_body_bytes,
        header_read_timeout_ms: config.http.header_read_timeout_ms,
        body_read_timeout_ms: config.http.body_read_timeout_ms,
        max_connections,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
