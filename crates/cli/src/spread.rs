//! `redrive server --spread`: the executions are spread over the servers
//! sharing a PostgreSQL database, by shard (`redrive_core::shard`: the shard
//! of a pipeline's or function's name). Each process holds the leases of about
//! an even share of the shards and runs one engine per shard it holds (its own
//! driver, group-commit writer and fencing token), and routes every request to
//! the holder of its shard ([`redrive_api::switch::ShardRoute`]).
//!
//! Every heartbeat a process (1) gives up the shards whose store was taken over
//! or whose engine stopped, (2) takes free shards (or shards whose holder's
//! lease lapsed) while it holds fewer than its fair share, (3) releases one
//! shard — draining its engine first — while it holds more (a process joined),
//! and (4) routes each shard to its holder. The holder of shard 0 also serves
//! the requests that name no pipeline and runs the redrive schedules; a
//! redrive run has each entry resubmitted by its shard's holder
//! ([`crate::peer`]).

use anyhow::Context;
use redrive_api::auth::AuthConfig;
use redrive_api::switch::{ShardRoute, Switch};
use redrive_core::shard::{ShardId, fair_share};
use redrive_engine::health::Health;
use redrive_engine::redrive::{RedriveSchedule, ShardHolder};
use redrive_engine::retention::SweepConfig;
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, EngineHandle, SystemClock};
use redrive_store::{AnyStore, Store, StoreOptions};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the routes follow the shards' holders between heartbeats.
const ROUTE_REFRESH: Duration = Duration::from_millis(200);

/// What every shard's engine is made with.
pub(crate) struct SpreadContext {
    /// The process's member store (the whole database, following).
    pub store: Arc<AnyStore>,
    pub options: StoreOptions,
    pub driver_config: DriverConfig,
    pub schedules: Vec<RedriveSchedule>,
    pub auth: Option<Arc<AuthConfig>>,
    pub max_body_bytes: usize,
    pub sweep: SweepConfig,
    /// How long a released shard's running attempts may take to finish.
    pub grace: Duration,
    pub switch: Arc<Switch>,
    /// The engines of the shards this process holds (a redrive run on one of
    /// them moves the entries of the others through them).
    pub engines: Arc<RwLock<BTreeMap<ShardId, EngineHandle>>>,
    /// Asks the other processes to redrive their shards' entries.
    pub peers: Arc<crate::peer::Peers>,
}

/// One shard this process holds.
struct Held {
    store: Arc<AnyStore>,
    handle: EngineHandle,
    join: tokio::task::JoinHandle<Result<(), redrive_engine::EngineError>>,
    router: axum::Router,
    sweeper: tokio::task::JoinHandle<()>,
}

/// Runs the shards' engines until `until` resolves; then drains them.
/// `ready` is told how many shards the first heartbeat took.
pub(crate) async fn drive(ctx: SpreadContext, ready: impl FnOnce(usize), until: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut held: BTreeMap<ShardId, Held> = BTreeMap::new();
    let me = redrive_store::member_id();
    ctx.switch.spread(routes(&held, &[], &me));
    tokio::pin!(until);
    let mut refresh = tokio::time::interval(ROUTE_REFRESH.min(ctx.store.heartbeat()));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_turn = tokio::time::Instant::now();
    let mut ready = Some(ready);
    loop {
        if tokio::time::Instant::now() >= next_turn {
            if let Err(e) = turn(&ctx, &me, &mut held).await {
                tracing::warn!(error = %format!("{e:#}"), "the shards could not be balanced this heartbeat; trying again at the next");
            }
            if let Some(ready) = ready.take() {
                ready(held.len());
            }
            next_turn = tokio::time::Instant::now() + ctx.store.heartbeat();
        } else if let Ok(owners) = ctx.store.shard_owners().await {
            // Between heartbeats, follow the other processes' takes and releases.
            ctx.switch.spread(routes(&held, &owners, &me));
        }
        tokio::select! {
            _ = &mut until => break,
            _ = refresh.tick() => {}
        }
    }
    ctx.switch.spread(routes(&BTreeMap::new(), &[], &me));
    if let Some(h) = held.values().next() {
        ctx.peers.revoke_token(&h.store).await;
    }
    // All at once: a shutdown takes one grace (and, with the store down, one
    // commit wait), not one per shard.
    let mut releasing = tokio::task::JoinSet::new();
    for (shard, h) in std::mem::take(&mut held) {
        let (engines, grace) = (ctx.engines.clone(), ctx.grace);
        releasing.spawn(async move { release(shard, h, grace, &engines).await.map_err(|e| (shard, e)) });
    }
    let mut undrained = Vec::new();
    while let Some(released) = releasing.join_next().await {
        if let Ok(Err((shard, _))) = released {
            undrained.push(shard.to_string());
        }
    }
    // As a leader's: an exit without the last changes committed is a failure.
    match undrained.is_empty() {
        true => Ok(()),
        false => {
            Err(anyhow::anyhow!("shard(s) {} were let go without a full drain; their next holder retries what ran", undrained.join(", ")))
        }
    }
}

/// One heartbeat: drop lost shards, take or release one's share, route.
async fn turn(ctx: &SpreadContext, me: &str, held: &mut BTreeMap<ShardId, Held>) -> anyhow::Result<()> {
    drop_lost(held, &ctx.engines).await;
    let members = ctx.store.live_members().await.context("listing the live members")?;
    let rank = members.iter().position(|m| m == me).unwrap_or(members.len());
    let share = fair_share(members.len().max(rank + 1), rank);
    let owners = ctx.store.shard_owners().await.context("reading the shards' leases")?;
    if held.len() < share && !ctx.store.shard_holders_of_other_kinds().await.context("reading the members' kinds")?.is_empty() {
        tracing::error!("SDK processes running durable functions hold shards of this database: servers take none beside them");
    } else if held.len() < share {
        let free: Vec<ShardId> = ShardId::all().filter(|s| !held.contains_key(s) && !owners.iter().any(|o| o.shard == *s)).collect();
        for shard in free.into_iter().take(share - held.len()) {
            if let Some(h) = take(ctx, shard).await.with_context(|| format!("taking shard {shard}"))? {
                held.insert(shard, h);
                // Routed at once: the shard's requests are served from now on.
                ctx.switch.spread(routes(held, &owners, me));
            }
        }
    } else if held.len() > share {
        // A process joined: give one shard back (it takes it at its heartbeat).
        if let Some((&shard, _)) = held.iter().next_back() {
            let h = held.remove(&shard).expect("listed above");
            ctx.switch.spread(routes(held, &owners, me));
            tracing::info!(shard = shard.index(), "releasing shard {shard}: {} live processes share the shards", members.len());
            let _ = release(shard, h, ctx.grace, &ctx.engines).await;
        }
    }
    let owners = ctx.store.shard_owners().await.context("reading the shards' leases")?;
    ctx.switch.spread(routes(held, &owners, me));
    if let Err(e) = share_dependencies(ctx, held).await {
        // The engines keep deciding over the states they were last given.
        tracing::warn!(error = %format!("{e:#}"), "the shards' dependency states could not be read this heartbeat");
    }
    // Written through a shard's store: the process's own store only follows.
    if let Some(h) = held.values().next() {
        ctx.peers.refresh_token(&h.store, redrive_engine::Clock::now(&SystemClock)).await.context("making this process's peer token")?;
    }
    Ok(())
}

/// Hands each engine the dependency states every other shard's engine stored
/// (one read for the process), so retry budgets and circuit breakers decide
/// for the cluster, a heartbeat behind at most.
async fn share_dependencies(ctx: &SpreadContext, held: &BTreeMap<ShardId, Held>) -> anyhow::Result<()> {
    if held.is_empty() {
        return Ok(());
    }
    let all = ctx.store.list_shard_dependencies().await?;
    for (shard, h) in held {
        let others = all.iter().filter(|r| r.shard != *shard).map(|r| r.record.clone()).collect();
        // An engine that stopped is dropped at the next heartbeat.
        let _ = h.handle.set_dependency_peers(others).await;
    }
    Ok(())
}

/// Stops the engines of shards another process took over (their writes are
/// refused) or whose engine stopped.
async fn drop_lost(held: &mut BTreeMap<ShardId, Held>, engines: &RwLock<BTreeMap<ShardId, EngineHandle>>) {
    let lost: Vec<ShardId> = held
        .iter()
        .filter(|(_, h)| h.store.lost_reason().is_some() || matches!(h.handle.health(), Health::Stopped { .. }))
        .map(|(s, _)| *s)
        .collect();
    for shard in lost {
        let h = held.remove(&shard).expect("listed above");
        engines.write().unwrap_or_else(|e| e.into_inner()).remove(&shard);
        let reason = h.store.lost_reason().unwrap_or_else(|| "its engine stopped".into());
        tracing::error!(shard = shard.index(), "shard {shard} is no longer driven by this process: {reason}");
        h.sweeper.abort();
        h.handle.shutdown().await;
        let _ = h.join.await;
    }
}

/// Takes `shard`'s lease if it is free and starts its engine: the shard's
/// unfinished executions are resumed (attempts in flight at a dead holder are
/// recovered as `Step.SERVICE_FAULT`). `None` if another process got it first.
async fn take(ctx: &SpreadContext, shard: ShardId) -> anyhow::Result<Option<Held>> {
    let store = Arc::new(ctx.store.shard_member(shard, &ctx.options)?);
    if !store.try_lead().await? {
        return Ok(None);
    }
    let clock = Arc::new(SystemClock);
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), ctx.driver_config.clone());
    let (resumed, quarantined) = crate::server::resume_unfinished(&store, &handle).await?;
    let mut service = Service::new(store.clone(), handle.clone(), clock.clone());
    service.set_whole_store(ctx.store.clone());
    let (engines, peer) = (ctx.engines.clone(), ctx.peers.redrive());
    service.set_shard_holders(Arc::new(move |s| match engines.read().unwrap_or_else(|e| e.into_inner()).get(&s) {
        Some(engine) => ShardHolder::Here(engine.clone()),
        None => ShardHolder::Elsewhere(peer.clone()),
    }));
    let global = shard.index() == redrive_api::shard_route::GLOBAL_SHARD;
    if global {
        service.set_schedules(ctx.schedules.clone()).map_err(|e| anyhow::anyhow!("redriveSchedules: {e}"))?;
    }
    let service = Arc::new(service);
    if global {
        service.start_schedules().await.context("starting the redrive schedules")?;
    }
    let sweeper = redrive_engine::retention::spawn_sweeper(store.clone(), handle.clone(), clock, ctx.sweep);
    let router = redrive_api::server::app_with_auth(service, ctx.max_body_bytes, ctx.auth.clone());
    ctx.engines.write().unwrap_or_else(|e| e.into_inner()).insert(shard, handle.clone());
    tracing::info!(shard = shard.index(), resumed, quarantined, "took shard {shard} ({resumed} unfinished executions resumed)");
    Ok(Some(Held { store, handle, join, router, sweeper }))
}

/// Drains `shard`'s engine (running attempts get `grace` to finish; the rest
/// run again at the next holder) and lets its lease go; an error says the
/// drain did not commit everything (logged here).
async fn release(shard: ShardId, h: Held, grace: Duration, engines: &RwLock<BTreeMap<ShardId, EngineHandle>>) -> anyhow::Result<()> {
    engines.write().unwrap_or_else(|e| e.into_inner()).remove(&shard);
    h.sweeper.abort();
    let drained = crate::server::drain_within(&h.handle, h.join, grace).await;
    if let Err(e) = &drained {
        tracing::warn!(shard = shard.index(), "shard {shard} was let go without a full drain: {e:#}; its next holder retries what ran");
    }
    // Dropping the store closes its lock connection: the lease is free.
    drop(h.store);
    drained
}

/// The route of every shard: here, at its live holder's URL, or nobody.
/// (A lease of this process's that is not in `held` is being let go: nobody.)
fn routes(held: &BTreeMap<ShardId, Held>, owners: &[redrive_store::ShardOwner], me: &str) -> Vec<ShardRoute> {
    ShardId::all()
        .map(|shard| match held.get(&shard) {
            Some(h) => ShardRoute::Local(h.router.clone()),
            None => match owners.iter().find(|o| o.shard == shard && o.member != me).and_then(|o| o.url.clone()) {
                Some(url) => ShardRoute::Remote(url),
                None => ShardRoute::Nobody,
            },
        })
        .collect()
}
