//! Deterministic jitter draws.
//!
//! A draw is a number in `[0, 1]` derived from a hash of (execution id, stage,
//! action, attempt number), so the same failure always gets the same delay and a
//! preview (`redrive policy explain --execution-id`) can show it exactly.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct JitterDraw(f64);

impl JitterDraw {
    /// The draw that keeps the full computed delay (used for worst-case previews).
    pub const MAX: JitterDraw = JitterDraw(1.0);
    pub const MIN: JitterDraw = JitterDraw(0.0);

    /// Clamps into `[0, 1]`; NaN becomes 1 (the full delay).
    pub fn new(x: f64) -> JitterDraw {
        if x.is_nan() { JitterDraw::MAX } else { JitterDraw(x.clamp(0.0, 1.0)) }
    }

    /// Maps 64 random bits uniformly onto `[0, 1)`.
    pub fn from_bits(bits: u64) -> JitterDraw {
        JitterDraw((bits >> 11) as f64 / (1u64 << 53) as f64)
    }

    pub fn value(self) -> f64 {
        self.0
    }

    /// The draw for one attempt of one action in one execution. `attempt` is the
    /// number of the attempt that failed (1 = first try).
    pub fn for_attempt(execution_id: &str, stage: &str, action: &str, attempt: u32) -> JitterDraw {
        let mut h = Fnv1a::new();
        for part in [execution_id.as_bytes(), stage.as_bytes(), action.as_bytes()] {
            h.write(part);
            h.write(&[0xff]); // separator: ("ab","c") and ("a","bc") differ
        }
        h.write(&attempt.to_le_bytes());
        JitterDraw::from_bits(splitmix64(h.0))
    }
}

/// A stable 64-bit hash of `bytes` (FNV-1a spread by splitmix64): the same on
/// every platform and version, for identifiers derived from values.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(bytes);
    splitmix64(h.0)
}

/// FNV-1a, 64-bit: tiny, stable across versions and platforms.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Finaliser that spreads FNV's weak low bits across the whole word.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_in_range() {
        let a = JitterDraw::for_attempt("e1", "Build", "Compile", 1);
        assert_eq!(a, JitterDraw::for_attempt("e1", "Build", "Compile", 1));
        assert_ne!(a, JitterDraw::for_attempt("e1", "Build", "Compile", 2));
        assert_ne!(JitterDraw::for_attempt("e1", "ab", "c", 1), JitterDraw::for_attempt("e1", "a", "bc", 1));
        for i in 0..1000 {
            let d = JitterDraw::for_attempt("x", "s", "a", i).value();
            assert!((0.0..1.0).contains(&d));
        }
    }

    #[test]
    fn roughly_uniform() {
        let n = 10_000;
        let mean: f64 = (0..n).map(|i| JitterDraw::for_attempt("exec", "s", "a", i).value()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }
}
