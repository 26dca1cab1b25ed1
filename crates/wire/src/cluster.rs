//! `GET /v1/cluster`: the processes sharing the store, who leads, the timers' lag.

use crate::{Timestamp, wire_enum};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

wire_enum!(
    /// What a process does in the cluster.
    MemberRole {
        /// Holds the store's engine lease: drives every execution.
        Leader = "leader",
        /// Serves requests by forwarding them to the leader; takes over when the
        /// leader's lease lapses.
        Follower = "follower",
        /// Holds the leases of some shards (`shards`): drives their executions
        /// (servers started with `--spread`).
        Sharded = "sharded",
        /// Announced itself but has not sent a heartbeat for longer than the lease.
        Gone = "gone",
    }
);

wire_enum!(
    /// What kind of process a member is: the two do not share a database's shards.
    MemberKind {
        /// `redrive server` (or another `redrive` command).
        Server = "server",
        /// A program using the Rust SDK, running durable functions.
        Functions = "functions",
    }
);

impl Default for MemberKind {
    /// Members listed by servers older than the field are servers.
    fn default() -> Self {
        MemberKind::Server
    }
}

/// One `redrive` process sharing the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Where it serves HTTP (followers forward requests to the leader's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub role: MemberRole,
    /// `server` or `functions` (a process of the Rust SDK).
    #[serde(default)]
    pub kind: MemberKind,
    /// The shards whose lease it holds now (`--spread`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<u16>,
    pub started_at: Timestamp,
    pub last_heartbeat_at: Timestamp,
}

/// The store's engine lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLease {
    /// The leader's member id.
    pub holder: String,
    /// Fencing token: grows at every change of leader; a write carrying an older
    /// one is refused.
    pub fencing_token: i64,
    pub acquired_at: Timestamp,
    pub expires_at: Timestamp,
}

/// One shard's lease (servers started with `--spread`): its holder drives the
/// executions of the pipelines whose names hash to this shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterShard {
    pub shard: u16,
    /// The holder's member id (the last one, if the lease lapsed).
    pub holder: String,
    /// Grows at every change of holder; a write carrying an older one is refused.
    pub fencing_token: i64,
    pub acquired_at: Timestamp,
    pub expires_at: Timestamp,
    /// Whether the lease runs now.
    pub live: bool,
}

/// Durable timers (attempts waiting for their retry delay, sleeps, redrive pacing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimerLag {
    /// Timers pending, due or not.
    pub pending: u64,
    /// The earliest due time among pending timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_at: Option<Timestamp>,
    /// How long the earliest timer has been overdue (0 when none is due): how far
    /// behind the engine is in firing timers.
    pub behind_ms: u64,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `sqlite` (one process holds the file) or `postgres`.
    pub backend: String,
    /// The process that answered.
    pub answered_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<ClusterLease>,
    pub members: Vec<ClusterMember>,
    /// The shards' leases (`--spread`; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ClusterShard>,
    pub timers: TimerLag,
}
