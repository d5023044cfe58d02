//! States kept as plain clones along the stretch of history a seek just walked, so that stepping
//! back through it re-applies a few inputs instead of a whole snapshot interval.
//!
//! Snapshots are encoded and spaced for memory; on a large state they can be a million inputs
//! apart, and every step back from the end of such an interval would replay all of it. A walk of
//! a quarter of an interval or more leaves up to [`PER_WALK`] states behind it instead, evenly
//! spaced, and the next step back starts from the nearest of them. Stepping back `n` times
//! through an interval of `d` inputs then costs about `d + n · d / (2 · PER_WALK)` applies in
//! all, not `n · d / 2`.

/// States one walk keeps at most.
pub const PER_WALK: usize = 16;

/// Kept states are at least this many inputs apart: re-applying fewer costs less than a clone.
pub const MIN_SPACING: usize = 64;

/// States of the machine at known positions, newest walk first to survive.
pub struct Trail<M> {
    /// (inputs applied, state), in increasing order of inputs applied.
    states: Vec<(usize, M)>,
    /// The most states kept.
    most: usize,
}

impl<M: Clone> Trail<M> {
    /// Room for `most` states; 0 turns the trail off.
    pub fn new(most: usize) -> Trail<M> {
        Trail {
            states: Vec::new(),
            most,
        }
    }

    /// The newest state at or before `applied` inputs, with its applied count.
    pub fn nearest(&self, applied: usize) -> Option<(usize, &M)> {
        let newer = self.states.partition_point(|(at, _)| *at <= applied);
        let (at, state) = self.states.get(newer.checked_sub(1)?)?;
        Some((*at, state))
    }

    /// Where a walk from `from` to `to` inputs applied should keep states: every `spacing`
    /// inputs after `from`, before `to`. `None` when the walk is too short for the clones to pay:
    /// shorter than a quarter of the snapshot `interval`. (The interval grows with the cost of
    /// encoding a state next to applying an input, and a clone costs a fraction of an encoding.)
    pub fn spacing(&self, from: usize, to: usize, interval: usize) -> Option<usize> {
        let distance = to.saturating_sub(from);
        if self.most < PER_WALK || distance < (interval / 4).max(2 * MIN_SPACING) {
            return None;
        }
        // `PER_WALK` states strictly between the two ends.
        Some(distance.div_ceil(PER_WALK + 1).max(MIN_SPACING))
    }

    /// Keeps `state`, the state after `applied` inputs, reached on a walk towards `target`.
    pub fn keep(&mut self, applied: usize, state: &M, target: usize) {
        let at = self.states.partition_point(|(at, _)| *at < applied);
        if self
            .states
            .get(at)
            .is_some_and(|(kept, _)| *kept == applied)
        {
            return;
        }
        self.states.insert(at, (applied, state.clone()));
        // Over the limit, drop the state farthest from where the user is now.
        while self.states.len() > self.most {
            let farthest = (0..self.states.len())
                .max_by_key(|&i| self.states[i].0.abs_diff(target))
                .expect("over the limit, so not empty");
            self.states.remove(farthest);
        }
    }

    /// States kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{Trail, MIN_SPACING, PER_WALK};

    #[test]
    fn the_nearest_state_is_the_newest_at_or_before() {
        let mut trail = Trail::new(PER_WALK * 2);
        for at in [100, 300, 200] {
            trail.keep(at, &at, 300);
        }
        assert_eq!(trail.nearest(99), None);
        assert_eq!(trail.nearest(100), Some((100, &100)));
        assert_eq!(trail.nearest(299), Some((200, &200)));
        assert_eq!(trail.nearest(1_000), Some((300, &300)));
    }

    #[test]
    fn over_the_limit_the_states_farthest_from_the_target_go() {
        let mut trail = Trail::new(PER_WALK);
        for at in 0..PER_WALK + 4 {
            trail.keep(at * 10, &at, 0);
        }
        assert_eq!(trail.len(), PER_WALK);
        assert_eq!(
            trail.nearest(usize::MAX).map(|(at, _)| at),
            Some((PER_WALK - 1) * 10)
        );
    }

    #[test]
    fn short_walks_keep_nothing_and_long_ones_keep_one_walks_worth() {
        let trail: Trail<u8> = Trail::new(PER_WALK * 2);
        assert_eq!(trail.spacing(0, MIN_SPACING, 0), None);
        assert_eq!(trail.spacing(0, 200_000, 1_000_000), None);
        let spacing = trail
            .spacing(0, 1_000_000, 1_000_000)
            .expect("a long walk keeps states");
        assert_eq!((1_000_000 - 1) / spacing, PER_WALK);
        assert_eq!(Trail::<u8>::new(0).spacing(0, 1_000_000, 0), None);
    }
}
