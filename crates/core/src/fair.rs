//! Fair sharing of attempt slots between pipelines: which waiting pipeline gets
//! the next free slot. Pure; the engine's `FairSlots` applies it.
//!
//! The rule (max-min fairness): among pipelines with a waiting attempt that hold
//! fewer than `per_key_max` slots, the one holding the fewest gets the slot; a
//! tie goes to the one whose oldest waiting attempt came first. `per_key_max`
//! below the total keeps slots free for other pipelines however long one
//! pipeline's attempts run.

/// One pipeline with attempts waiting for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Slots the pipeline holds now.
    pub running: usize,
    /// Arrival number of its oldest waiting attempt (smaller = earlier).
    pub oldest: u64,
}

/// The pipeline (index into `waiting`) that gets the next free slot, if any may.
pub fn pick_next(waiting: &[Waiting], per_key_max: usize) -> Option<usize> {
    waiting.iter().enumerate().filter(|(_, w)| w.running < per_key_max).min_by_key(|(_, w)| (w.running, w.oldest)).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(running: usize, oldest: u64) -> Waiting {
        Waiting { running, oldest }
    }

    #[test]
    fn fewest_running_first_then_oldest() {
        assert_eq!(pick_next(&[w(3, 1), w(0, 9), w(1, 2)], 10), Some(1));
        assert_eq!(pick_next(&[w(2, 5), w(2, 3)], 10), Some(1));
        assert_eq!(pick_next(&[], 10), None);
    }

    #[test]
    fn a_pipeline_at_its_cap_waits() {
        assert_eq!(pick_next(&[w(4, 1)], 4), None);
        assert_eq!(pick_next(&[w(4, 1), w(7, 0)], 4), None);
        assert_eq!(pick_next(&[w(4, 1), w(3, 9)], 4), Some(1));
    }
}
