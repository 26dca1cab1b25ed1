//! Shards: how executions are spread over the processes of a cluster.
//!
//! Every execution belongs to the shard of its pipeline's (or function's)
//! name, so the rules that span one pipeline's executions (concurrency limits,
//! QUEUED order, stage locks, "not the latest execution") are decided by the
//! one process that holds that shard's lease. The shard of a name is part of
//! what is stored (PostgreSQL keeps it in a column), so [`ShardId::of`] must
//! never change: its hash is FNV-1a (64 bit) of the name's UTF-8 bytes, and
//! [`SHARD_COUNT`] is fixed.

use std::fmt;

/// How many shards there are. Fixed: the shard of a stored execution is never
/// recomputed.
pub const SHARD_COUNT: u16 = 16;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One shard, `0..SHARD_COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(u16);

impl ShardId {
    /// The shard numbered `index`, if there is one.
    pub fn new(index: u16) -> Result<ShardId, String> {
        if index < SHARD_COUNT {
            Ok(ShardId(index))
        } else {
            Err(format!("shard {index} does not exist (shards are 0 to {})", SHARD_COUNT - 1))
        }
    }

    /// The shard of the executions of the pipeline (or function) `name`.
    pub fn of(name: &str) -> ShardId {
        let hash = name.bytes().fold(FNV_OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
        ShardId((hash % u64::from(SHARD_COUNT)) as u16)
    }

    /// Every shard, in order.
    pub fn all() -> impl Iterator<Item = ShardId> {
        (0..SHARD_COUNT).map(ShardId)
    }

    pub fn index(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How many shards a member should hold: an even share of [`SHARD_COUNT`]
/// among `live_members` (at least one member: the caller), the first
/// `SHARD_COUNT % live_members` members by rank taking one more. `rank` is the
/// member's position among the live members in a stable order (0-based).
pub fn fair_share(live_members: usize, rank: usize) -> usize {
    let members = live_members.max(1);
    let count = usize::from(SHARD_COUNT);
    count / members + usize::from(rank.min(members - 1) < count % members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_shard_of_a_name_never_changes() {
        // Stored in the database: these must hold for every release (computed
        // independently with an FNV-1a of the UTF-8 bytes, modulo 16).
        let fixed: Vec<(&str, u16)> =
            ["", "a", "orders", "payments-api", "W1-0", "nightly-build"].iter().map(|n| (*n, ShardId::of(n).index())).collect();
        assert_eq!(fixed, vec![("", 5), ("a", 12), ("orders", 12), ("payments-api", 11), ("W1-0", 8), ("nightly-build", 3)]);
    }

    #[test]
    fn shards_outside_the_range_do_not_exist() {
        assert!(ShardId::new(SHARD_COUNT).is_err());
        assert_eq!(ShardId::new(SHARD_COUNT - 1).map(ShardId::index), Ok(SHARD_COUNT - 1));
        assert_eq!(ShardId::all().count(), usize::from(SHARD_COUNT));
    }

    #[test]
    fn fair_shares_add_up_to_every_shard() {
        for members in 1..=40 {
            let total: usize = (0..members).map(|rank| fair_share(members, rank)).sum();
            assert_eq!(total, usize::from(SHARD_COUNT), "{members} members");
        }
        assert_eq!(fair_share(0, 0), usize::from(SHARD_COUNT));
        assert_eq!((fair_share(3, 0), fair_share(3, 1), fair_share(3, 2)), (6, 5, 5));
    }

    proptest! {
        #[test]
        fn every_name_has_a_shard_in_range(name in ".{0,64}") {
            let shard = ShardId::of(&name);
            prop_assert!(shard.index() < SHARD_COUNT);
            prop_assert_eq!(shard, ShardId::of(&name.clone()));
        }
    }
}
