//! `GET /v1/cluster`: the processes sharing the store, who leads and holds the
//! lease, and how far behind the durable timers are.

use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use redrive_core::time::Timestamp;
use redrive_engine::service::{Service, ServiceError};
use redrive_store::{ClusterRecord, Store};
use redrive_wire as w;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new().routes(crate::doc::op::<__path_cluster_status, _, _, _>(cluster_status::<S>))
}

/// The processes sharing the store (the leader drives every execution; followers
/// forward requests to it and take over when its lease lapses), the lease with
/// its fencing token, and the timers' lag.
#[utoipa::path(get, path = "/v1/cluster", tag = "operations",
    responses((status = 200, description = "Success", body = w::ClusterStatus),
        (status = 503, description = "The store cannot be read; `Retry-After` says when to retry", body = w::ErrorResponse)))]
pub async fn cluster_status<S: Store>(State(svc): State<Arc<Service<S>>>) -> Result<Json<w::ClusterStatus>, ApiError> {
    Ok(Json(read_status(svc.store().as_ref(), svc.now()).await.map_err(|e| ApiError(ServiceError::Unavailable(e.to_string())))?))
}

/// The cluster as `store` records it, at `now`.
pub async fn read_status<S: Store>(store: &S, now: Timestamp) -> Result<w::ClusterStatus, redrive_store::StoreError> {
    let record = store.cluster().await?;
    let pending = store.count_timers().await?;
    let next_due = store.next_timer_due().await?;
    let behind_ms = next_due.map_or(0, |due| u64::try_from(now.unix_ms() - due.unix_ms()).unwrap_or(0));
    Ok(status(record, w::TimerLag { pending, next_due_at: next_due.map(|t| t.to_string()), behind_ms }))
}

fn status(record: ClusterRecord, timers: w::TimerLag) -> w::ClusterStatus {
    let leader = record.lease.as_ref().map(|l| l.holder.clone());
    let held_by =
        |id: &str| -> Vec<u16> { record.shards.iter().filter(|s| s.live && s.lease.holder == id).map(|s| s.shard.index()).collect() };
    let members = record
        .members
        .iter()
        .map(|m| {
            let shards = held_by(&m.id);
            let role = match (&leader, m.alive) {
                (_, false) => w::MemberRole::Gone,
                (_, true) if !shards.is_empty() => w::MemberRole::Sharded,
                (Some(holder), true) if *holder == m.id => w::MemberRole::Leader,
                // Without a lease (SQLite) the one process holding the file leads.
                (None, true) => w::MemberRole::Leader,
                (Some(_), true) => w::MemberRole::Follower,
            };
            w::ClusterMember {
                id: m.id.clone(),
                host: m.host.clone(),
                pid: m.pid,
                url: m.url.clone(),
                role,
                kind: match m.kind {
                    redrive_store::MemberKind::Server => w::MemberKind::Server,
                    redrive_store::MemberKind::Functions => w::MemberKind::Functions,
                },
                shards,
                started_at: m.started_at.to_string(),
                last_heartbeat_at: m.heartbeat_at.to_string(),
            }
        })
        .collect();
    let lease = record.lease.map(|l| w::ClusterLease {
        holder: l.holder,
        fencing_token: l.token,
        acquired_at: l.acquired_at.to_string(),
        expires_at: l.expires_at.to_string(),
    });
    let shards = record
        .shards
        .into_iter()
        .map(|s| w::ClusterShard {
            shard: s.shard.index(),
            holder: s.lease.holder,
            fencing_token: s.lease.token,
            acquired_at: s.lease.acquired_at.to_string(),
            expires_at: s.lease.expires_at.to_string(),
            live: s.live,
        })
        .collect();
    w::ClusterStatus { backend: record.backend.to_string(), answered_by: redrive_store::member_id(), lease, members, shards, timers }
}
