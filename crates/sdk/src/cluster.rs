//! Durable functions spread over the SDK processes sharing a PostgreSQL
//! database: each process holds the leases of about an even share of the 16
//! shards (the shard of a function is that of its name, as for pipelines) and
//! runs one engine per shard it holds, with every function registered in it.
//! A start of a function whose shard another process holds is handed to that
//! process through the database (a start request it answers); a process that
//! dies or stalls has its shards, and so its executions, taken over by the
//! others, which replay them from their checkpoints.
//!
//! Every heartbeat a process (1) gives up the shards whose store was taken
//! over or whose engine stopped, (2) takes free shards (or shards whose
//! holder's lease lapsed) while it holds fewer than its fair share, resuming
//! their unfinished executions, and (3) gives one back (its engine drained
//! first) while it holds more. Between heartbeats it starts what was
//! requested of its shards, woken by the requests' `NOTIFY`.

use crate::Error;
use redrive_api::switch::{ShardRoute, Switch};
use redrive_core::name::Name;
use redrive_core::shard::{ShardId, fair_share};
use redrive_core::time::Timestamp;
use redrive_engine::function::DurableFunction;
use redrive_engine::health::Health;
use redrive_engine::service::Service;
use redrive_engine::{Clock, Driver, DriverConfig, EngineError, EngineHandle};
use redrive_store::postgres::StartListener;
use redrive_store::{AnyStore, ExecutionFilter, StartRequest, Store, StoreOptions, TargetName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a process looks for start requests of its shards when it
/// cannot listen for them (each request is announced with `NOTIFY`).
const INBOX_POLL: Duration = Duration::from_millis(50);
/// How often it looks anyway while it listens (a request announced while its
/// listening connection was being replaced is found then).
const INBOX_FALLBACK_POLL: Duration = Duration::from_secs(1);
/// Start requests a process reads (and starts together) at once per shard:
/// with inputs of up to 1 MiB each, at most 32 MiB held for a page.
const INBOX_BATCH: usize = 32;
/// How long a start waits for the holder of its shard to answer.
pub(crate) const FORWARDED_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an answered start request whose requester never read it is kept.
const UNREAD_OUTCOME_KEPT: Duration = Duration::from_secs(600);
/// How often the API's routes follow the other processes' takes and releases
/// between heartbeats (while this process serves it).
const ROUTE_REFRESH: Duration = Duration::from_millis(200);
/// How long a released shard's running steps may take to finish.
const RELEASE_GRACE: Duration = Duration::from_secs(5);
/// The longest pause between two reads of a forwarded start's outcome or of
/// an execution another process drives.
const MAX_POLL: Duration = Duration::from_millis(50);

/// A function as registered: made again into every engine this process runs.
#[derive(Clone)]
pub(crate) struct Registration {
    pub name: String,
    pub function: Arc<dyn DurableFunction>,
    pub queue: Option<Name>,
}

/// The engine of one shard this process holds.
#[derive(Clone)]
struct ShardEngine {
    store: Arc<AnyStore>,
    handle: EngineHandle,
}

/// What registering and taking change together (one lock, so that a function
/// registered while a shard is taken is in its engine either way).
#[derive(Default)]
struct Local {
    functions: Vec<Registration>,
    engines: BTreeMap<ShardId, ShardEngine>,
    /// Set by [`Shards::serve`]: the API's switch and each held shard's router.
    serving: Option<Serving>,
}

/// The native API of an SDK process ([`crate::Engine::serve`]): each request
/// goes to its shard's holder — served by this process's engine of the
/// shard, forwarded to the holder if it serves the API too, or 503.
struct Serving {
    switch: Arc<Switch>,
    max_body_bytes: usize,
    routers: BTreeMap<ShardId, axum::Router>,
}

/// What a start request's holder answers (stored as JSON, read by the requester).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
enum StartOutcome {
    Started { execution_id: String, existing: bool },
    AlreadyExists { execution_id: String },
    NotRegistered,
    Refused { message: String },
}

/// The shards this process drives, and the loop keeping its share.
pub(crate) struct Shards {
    /// The whole database, following (reads, start requests, membership).
    member: Arc<AnyStore>,
    options: StoreOptions,
    clock: Arc<dyn Clock>,
    me: String,
    local: Mutex<Local>,
    /// The engines' tasks, by shard (only the loop takes and releases).
    joins: tokio::sync::Mutex<BTreeMap<ShardId, tokio::task::JoinHandle<Result<(), EngineError>>>>,
    stop: tokio::sync::Notify,
}

impl Shards {
    /// Joins the database's SDK processes: takes this process's share of the
    /// shards (all of them when it is alone) before returning, then keeps it.
    pub(crate) async fn join(member: AnyStore, options: StoreOptions, clock: Arc<dyn Clock>) -> Result<Arc<Shards>, Error> {
        let member = Arc::new(member);
        let servers = member.shard_holders_of_other_kinds().await?;
        if !servers.is_empty() {
            return Err(Error::Engine(format!(
                "the database's shards are held by redrive server(s) {}: SDK processes and servers cannot share a \
                 database's shards (a server cannot run a function's steps); give the SDK its own database",
                servers.join(", ")
            )));
        }
        let shards = Arc::new(Shards {
            member,
            options,
            clock,
            me: redrive_store::member_id(),
            local: Mutex::default(),
            joins: tokio::sync::Mutex::default(),
            stop: tokio::sync::Notify::new(),
        });
        shards.turn().await.map_err(|e| Error::Engine(format!("taking this process's share of the shards: {e}")))?;
        if shards.local().engines.is_empty() && shards.member.shard_owners().await?.is_empty() {
            shards.shutdown().await;
            return Err(Error::Engine(
                "no shard of the database could be taken: another process holds the whole database (a `redrive run`, \
                 a `redrive server --cluster-mode standby` or an older SDK); `redrive cluster status --db URL` names it"
                    .into(),
            ));
        }
        Ok(shards)
    }

    /// Runs the heartbeat and the start requests until [`Shards::shutdown`].
    pub(crate) async fn run(self: Arc<Shards>) {
        let now = tokio::time::Instant::now;
        let (mut next_turn, mut next_route) = (now() + self.member.heartbeat(), now() + ROUTE_REFRESH);
        let mut inbox = Inbox::new();
        loop {
            if now() >= next_turn {
                if let Err(e) = self.turn().await {
                    tracing::warn!(error = %e, "the shards could not be balanced this heartbeat; trying again at the next");
                }
                next_turn = now() + self.member.heartbeat();
            } else if now() >= next_route {
                if let Err(e) = self.route().await {
                    tracing::debug!(error = %e, "the API's routes could not be refreshed");
                }
                next_route = now() + ROUTE_REFRESH;
            }
            inbox.serve(&self).await;
            let wake = match inbox.announced.is_empty() {
                true => next_turn.min(next_route).min(inbox.next_poll),
                false => now(),
            };
            tokio::select! {
                () = self.stop.notified() => return,
                () = tokio::time::sleep_until(wake) => {}
                shard = next_announced(&mut inbox.listener) => match shard {
                    Some(shard) => { inbox.announced.insert(shard); }
                    None => inbox.listener = None,
                },
            }
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine of `shard` if this process holds it.
    fn engine(&self, shard: ShardId) -> Option<ShardEngine> {
        self.local().engines.get(&shard).cloned()
    }

    /// The store of some shard this process holds (for writes that belong to
    /// no execution, e.g. creating a dead-letter queue).
    pub(crate) fn any_store(&self) -> Option<Arc<AnyStore>> {
        self.local().engines.values().next().map(|e| e.store.clone())
    }

    /// The store and engine driving `shard`, if this process holds it.
    pub(crate) fn driving(&self, shard: ShardId) -> Option<(Arc<AnyStore>, EngineHandle)> {
        self.engine(shard).map(|e| (e.store, e.handle))
    }

    /// Registers a function in every engine this process runs (and in every
    /// engine it starts later), and resumes its unfinished executions if this
    /// process holds its shard.
    pub(crate) fn register(self: &Arc<Shards>, registration: Registration) -> Option<tokio::task::JoinHandle<()>> {
        let shard = ShardId::of(&registration.name);
        let mut local = self.local();
        for engine in local.engines.values() {
            let _ = engine.handle.register_function_now(&registration.name, registration.function.clone(), registration.queue.clone());
        }
        local.functions.retain(|r| r.name != registration.name);
        local.functions.push(registration.clone());
        let engine = local.engines.get(&shard).cloned()?;
        Some(tokio::spawn(async move {
            let target = Some(TargetName::function(registration.name.clone()));
            if let Err(e) = resume_unfinished(&engine.store, &engine.handle, target).await {
                tracing::error!(function = registration.name, error = %e, "cannot resume the function's unfinished executions");
            }
        }))
    }

    /// Starts an execution here if this process holds the function's shard,
    /// otherwise through a start request to its holder.
    pub(crate) async fn start_function(&self, function: &str, name: &str, input_json: String) -> Result<(String, bool), Error> {
        let shard = ShardId::of(function);
        if let Some(engine) = self.engine(shard) {
            match engine.handle.start_function(function, name, input_json.clone()).await {
                // Given back meanwhile: its next holder starts it.
                Err(EngineError::Stopped) => {}
                done => return done.map_err(Error::from),
            }
        }
        let request = StartRequest { function: function.to_string(), name: name.to_string(), input_json };
        let id = self.member.request_function_start(shard, &request, self.clock.now()).await?;
        let deadline = tokio::time::Instant::now() + FORWARDED_START_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(outcome) = self.member.take_function_start_outcome(id).await? {
                return answered(function, name, &outcome);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Engine(format!(
                    "no process holding shard {shard} (of function {function}) answered the start of {name:?} within {} s; \
                     it stays requested and is started when a process holds the shard: start it again with the same \
                     name to get its execution",
                    FORWARDED_START_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// The whole database (reads and start requests).
    pub(crate) fn member(&self) -> Arc<AnyStore> {
        self.member.clone()
    }

    /// Ends [`Shards::run`] (at its next pause).
    pub(crate) fn stop(&self) {
        self.stop.notify_one();
    }

    /// Resolves when the execution has finished, wherever it is driven (also
    /// across a database outage: reads are tried again every heartbeat).
    pub(crate) async fn wait(&self, execution_id: &str) -> Result<(), Error> {
        let mut pause = Duration::from_millis(1);
        loop {
            let record = match self.member.get_execution(execution_id).await {
                Ok(found) => found.ok_or_else(|| Error::Engine(format!("execution {execution_id} not found")))?,
                // The database is unavailable for now: wait on.
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, execution_id, "cannot read the execution; trying again");
                    tokio::time::sleep(self.member.heartbeat()).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if record.status != "InProgress" {
                return Ok(());
            }
            if let Some(engine) = self.engine(ShardId::of(record.target.name())) {
                // Driven here: told at once (until the shard is given back).
                match tokio::time::timeout(self.member.heartbeat(), engine.handle.wait(execution_id)).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(_)) => tokio::time::sleep(MAX_POLL).await,
                    Err(_) => {}
                }
            } else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_POLL);
            }
        }
    }

    /// Stops every engine (running steps are abandoned and replayed by the
    /// shards' next holders); the loop must have ended ([`Shards::stop`]).
    pub(crate) async fn shutdown(&self) {
        let engines = {
            let mut local = self.local();
            // The API's routers hold the shards' stores (and so their leases) too.
            local.serving = None;
            std::mem::take(&mut local.engines)
        };
        let mut joins = self.joins.lock().await;
        for (shard, engine) in engines {
            engine.handle.shutdown().await;
            if let Some(join) = joins.remove(&shard) {
                let _ = join.await;
            }
        }
    }

    /// One heartbeat: drop lost shards, then take or give back toward this
    /// process's share.
    async fn turn(&self) -> Result<(), redrive_store::StoreError> {
        self.drop_lost().await;
        let members = self.member.live_members().await?;
        let rank = members.iter().position(|m| *m == self.me).unwrap_or(members.len());
        let share = fair_share(members.len().max(rank + 1), rank);
        let held: Vec<ShardId> = self.local().engines.keys().copied().collect();
        if held.len() < share {
            if !self.member.shard_holders_of_other_kinds().await?.is_empty() {
                tracing::error!("redrive servers hold shards of this database: SDK processes take none beside them");
                return Ok(());
            }
            // Free: no lease runs, or its holder is this process (an engine of
            // an earlier `open`) or stopped announcing itself (died: its lock
            // is free; stalled: taking fails until its lease lapses).
            let owners = self.member.shard_owners().await?;
            let kept_by_other = |s: ShardId| owners.iter().any(|o| o.shard == s && o.member != self.me && members.contains(&o.member));
            let free = ShardId::all().filter(|s| !held.contains(s) && !kept_by_other(*s));
            for shard in free.take(share - held.len()) {
                if let Err(e) = self.take(shard).await {
                    tracing::warn!(shard = shard.index(), error = %e, "shard {shard} could not be taken");
                }
            }
        } else if let Some(&shard) = held.last().filter(|_| held.len() > share) {
            tracing::info!(shard = shard.index(), "releasing shard {shard}: {} SDK processes share the shards", members.len());
            self.release(shard).await;
        }
        self.route().await?;
        if held.contains(&ShardId::all().next().expect("shard 0")) {
            let kept_ms = i64::try_from(UNREAD_OUTCOME_KEPT.as_millis()).unwrap_or(i64::MAX);
            let before = Timestamp::from_unix_ms(self.clock.now().unix_ms().saturating_sub(kept_ms));
            self.member.prune_function_start_outcomes(before).await?;
        }
        Ok(())
    }

    /// Takes `shard`'s lease if it is free, starts its engine with every
    /// function registered, and resumes the shard's unfinished executions.
    async fn take(&self, shard: ShardId) -> Result<(), redrive_store::StoreError> {
        let store = Arc::new(self.member.shard_member(shard, &self.options)?);
        if !store.try_lead().await? {
            return Ok(());
        }
        let (handle, join) = Driver::spawn(store.clone(), self.clock.clone(), DriverConfig::default());
        let engine = ShardEngine { store, handle };
        {
            let mut local = self.local();
            for r in &local.functions {
                let _ = engine.handle.register_function_now(&r.name, r.function.clone(), r.queue.clone());
            }
            local.engines.insert(shard, engine.clone());
        }
        self.joins.lock().await.insert(shard, join);
        let resumed = resume_unfinished(&engine.store, &engine.handle, None).await?;
        self.route().await?;
        tracing::info!(shard = shard.index(), resumed, "took shard {shard} ({resumed} unfinished executions resumed)");
        Ok(())
    }

    /// Drains `shard`'s engine and lets its lease go.
    async fn release(&self, shard: ShardId) {
        let Some(engine) = self.forget(shard) else { return };
        let left = engine.handle.drain(RELEASE_GRACE).await.unwrap_or(0);
        if left > 0 {
            tracing::warn!(
                shard = shard.index(),
                abandoned = left,
                "steps still running were abandoned; the shard's next holder replays them"
            );
        }
        if let Some(join) = self.joins.lock().await.remove(&shard) {
            let _ = join.await;
        }
        // Dropping the store closes its lock connection: the lease is free.
    }

    /// Stops the engines of shards taken over by another process (their
    /// writes are refused) or whose engine stopped.
    async fn drop_lost(&self) {
        let lost: Vec<(ShardId, ShardEngine)> = {
            let local = self.local();
            let lost: Vec<ShardId> = local
                .engines
                .iter()
                .filter(|(_, e)| e.store.lost_reason().is_some() || matches!(e.handle.health(), Health::Stopped { .. }))
                .map(|(s, _)| *s)
                .collect();
            drop(local);
            lost.into_iter().filter_map(|s| self.forget(s).map(|e| (s, e))).collect()
        };
        for (shard, engine) in lost {
            let reason = engine.store.lost_reason().unwrap_or_else(|| "its engine stopped".into());
            tracing::error!(shard = shard.index(), "shard {shard} is no longer driven by this process: {reason}");
            engine.handle.shutdown().await;
            if let Some(join) = self.joins.lock().await.remove(&shard) {
                let _ = join.await;
            }
        }
    }

    /// Stops driving `shard` here: its engine (returned, to stop) and its router.
    fn forget(&self, shard: ShardId) -> Option<ShardEngine> {
        let mut local = self.local();
        if let Some(serving) = &mut local.serving {
            serving.routers.remove(&shard);
        }
        local.engines.remove(&shard)
    }

    /// Serves the API through `switch` from now on (routes set at once and
    /// every heartbeat).
    pub(crate) async fn serve(&self, switch: Arc<Switch>, max_body_bytes: usize) -> Result<(), redrive_store::StoreError> {
        self.local().serving = Some(Serving { switch, max_body_bytes, routers: BTreeMap::new() });
        self.route().await
    }

    /// Routes each shard's requests: to this process's engine of it, to its
    /// holder's announced URL, or nowhere (503).
    async fn route(&self) -> Result<(), redrive_store::StoreError> {
        if self.local().serving.is_none() {
            return Ok(());
        }
        let owners = self.member.shard_owners().await?;
        let mut local = self.local();
        let Local { engines, serving, .. } = &mut *local;
        let Some(serving) = serving else { return Ok(()) };
        let routes = ShardId::all()
            .map(|shard| match engines.get(&shard) {
                Some(engine) => {
                    let router = serving.routers.entry(shard).or_insert_with(|| {
                        let mut service = Service::new(engine.store.clone(), engine.handle.clone(), self.clock.clone());
                        service.set_whole_store(self.member.clone());
                        redrive_api::server::app(Arc::new(service), serving.max_body_bytes)
                    });
                    ShardRoute::Local(router.clone())
                }
                None => match owners.iter().find(|o| o.shard == shard && o.member != self.me).and_then(|o| o.url.clone()) {
                    Some(url) => ShardRoute::Remote(url),
                    None => ShardRoute::Nobody,
                },
            })
            .collect();
        serving.switch.spread(routes);
        Ok(())
    }

    /// Starts what other processes asked of the shards this one holds (a
    /// page per shard, started together so that they share commits).
    /// Returns the shards that may have more waiting: a full page, every
    /// request of it answered.
    async fn serve_start_requests(&self, only: Option<&BTreeSet<ShardId>>) -> Result<BTreeSet<ShardId>, redrive_store::StoreError> {
        let engines: Vec<(ShardId, ShardEngine)> =
            self.local().engines.iter().filter(|(s, _)| only.is_none_or(|o| o.contains(s))).map(|(s, e)| (*s, e.clone())).collect();
        let mut more = BTreeSet::new();
        for (shard, engine) in engines {
            let waiting = engine.store.waiting_function_starts(INBOX_BATCH).await?;
            let mut unanswered = waiting.len();
            let full = unanswered == INBOX_BATCH;
            let mut starting = tokio::task::JoinSet::new();
            for record in waiting {
                let handle = engine.handle.clone();
                starting.spawn(async move {
                    let r = record.request;
                    (record.id, handle.start_function(&r.function, &r.name, r.input_json).await)
                });
            }
            while let Some(started) = starting.join_next().await {
                let Ok((id, result)) = started else { continue };
                let Some(outcome) = outcome_of(result) else { continue };
                let json = serde_json::to_string(&outcome).expect("outcomes serialize");
                engine.store.answer_function_start(id, &json, self.clock.now()).await?;
                unanswered -= 1;
            }
            if full && unanswered == 0 {
                more.insert(shard);
            }
        }
        Ok(more)
    }
}

/// Where a process stands with the start requests of its shards.
struct Inbox {
    /// Told of every request (`None` while it cannot listen: it polls).
    listener: Option<StartListener>,
    next_listen: tokio::time::Instant,
    /// Shards with requests announced and not read yet.
    announced: BTreeSet<ShardId>,
    /// When every shard's requests are read next (whether announced or not).
    next_poll: tokio::time::Instant,
}

impl Inbox {
    fn new() -> Inbox {
        let now = tokio::time::Instant::now();
        Inbox { listener: None, next_listen: now, announced: BTreeSet::new(), next_poll: now }
    }

    /// Listens (again) if it does not, and starts the requests announced, or
    /// every shard's when a poll is due. A failure is retried a heartbeat later.
    async fn serve(&mut self, shards: &Shards) {
        let now = tokio::time::Instant::now();
        if self.listener.is_none() && now >= self.next_listen {
            match shards.member.listen_for_start_requests().await {
                Ok(listener) => self.listener = Some(listener),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot listen for start requests; polling");
                    self.next_listen = now + shards.member.heartbeat();
                }
            }
        }
        self.announced.extend(self.listener.as_mut().map(StartListener::announced).unwrap_or_default());
        let every_shard = now >= self.next_poll;
        if !every_shard && self.announced.is_empty() {
            return;
        }
        let only = (!every_shard).then(|| std::mem::take(&mut self.announced));
        match shards.serve_start_requests(only.as_ref()).await {
            Ok(more) => {
                if every_shard {
                    self.announced.clear();
                    self.next_poll = now + if self.listener.is_some() { INBOX_FALLBACK_POLL } else { INBOX_POLL };
                }
                // Full pages: read on at once (their notifications may have been dropped).
                self.announced.extend(more);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the start requests failed; trying again at the next heartbeat");
                self.next_poll = now + shards.member.heartbeat();
            }
        }
    }
}

/// The next shard announced to `listener`; never while there is none.
async fn next_announced(listener: &mut Option<StartListener>) -> Option<ShardId> {
    match listener {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// What a holder answers; `None` leaves the request for the shard's next
/// holder (this engine stopped, or its store is unavailable or lost).
fn outcome_of(result: Result<(String, bool), EngineError>) -> Option<StartOutcome> {
    match result {
        Ok((execution_id, existing)) => Some(StartOutcome::Started { execution_id, existing }),
        Err(EngineError::ExecutionAlreadyExists { execution_id, .. }) => Some(StartOutcome::AlreadyExists { execution_id }),
        Err(EngineError::FunctionNotRegistered(_)) => Some(StartOutcome::NotRegistered),
        Err(EngineError::Stopped) => None,
        Err(EngineError::Store(e)) if e.is_transient() || matches!(e, redrive_store::StoreError::Lost(_)) => None,
        Err(other) => Some(StartOutcome::Refused { message: other.to_string() }),
    }
}

/// The requester's side of [`outcome_of`].
fn answered(function: &str, name: &str, outcome_json: &str) -> Result<(String, bool), Error> {
    match serde_json::from_str::<StartOutcome>(outcome_json) {
        Ok(StartOutcome::Started { execution_id, existing }) => Ok((execution_id, existing)),
        Ok(StartOutcome::AlreadyExists { execution_id }) => {
            Err(Error::ExecutionAlreadyExists { function: function.to_string(), name: name.to_string(), execution_id })
        }
        Ok(StartOutcome::NotRegistered) => Err(Error::NotRegistered(format!("{function} (at the process holding its shard)"))),
        Ok(StartOutcome::Refused { message }) => Err(Error::Invalid(message)),
        Err(e) => Err(Error::Engine(format!("unreadable answer to a start request: {e}"))),
    }
}

/// Resumes the unfinished executions in `store` (of one function, or all)
/// with `handle`, a page at a time: attempts in flight at a dead holder are
/// recovered as `Step.SERVICE_FAULT`; one not resumed (a function not
/// registered here yet: `register` resumes it) is skipped.
pub(crate) async fn resume_unfinished(
    store: &AnyStore,
    handle: &EngineHandle,
    target: Option<TargetName>,
) -> Result<usize, redrive_store::StoreError> {
    let mut resumed = 0;
    let mut before = None;
    loop {
        let filter = ExecutionFilter { target: target.clone(), unfinished_only: true, before: before.clone(), limit: 0 };
        let page = store.list_executions(filter).await?;
        let Some(last) = page.last() else { return Ok(resumed) };
        before = Some(last.cursor());
        let mut resuming = tokio::task::JoinSet::new();
        for e in &page {
            let (handle, id) = (handle.clone(), e.id.clone());
            resuming.spawn(async move { handle.resume(&id).await });
        }
        while let Some(done) = resuming.join_next().await {
            match done {
                Ok(Ok(())) => resumed += 1,
                Ok(Err(e)) => tracing::debug!(error = %e, "not resumed"),
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_as_the_holder_decided() {
        let cases =
            [(Ok(("e1".to_string(), false)), Ok(("e1".to_string(), false))), (Ok(("e1".to_string(), true)), Ok(("e1".to_string(), true)))];
        for (result, expected) in cases {
            let json = serde_json::to_string(&outcome_of(result).unwrap()).unwrap();
            assert_eq!(answered("f", "n", &json).map_err(|e: Error| e.to_string()), expected);
        }
        let exists =
            outcome_of(Err(EngineError::ExecutionAlreadyExists { function: "f".into(), name: "n".into(), execution_id: "e1".into() }));
        let json = serde_json::to_string(&exists.unwrap()).unwrap();
        assert_eq!(json, r#"{"outcome":"alreadyExists","executionId":"e1"}"#);
        assert!(matches!(answered("f", "n", &json), Err(Error::ExecutionAlreadyExists { execution_id, .. }) if execution_id == "e1"));
        assert!(outcome_of(Err(EngineError::Stopped)).is_none(), "a stopped engine leaves the request to the next holder");
        assert!(matches!(answered("f", "n", r#"{"outcome":"later"}"#), Err(Error::Engine(_))));
    }
}
