//! The seeded random numbers behind every fault decision.

use std::time::Duration;

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and the same sequence for
/// the same seed on every platform, which is all fault injection needs.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`: never for `p <= 0`, always for `p >= 1`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        // The top 53 bits make a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// A duration drawn uniformly from `min..=max` (nanosecond steps).
    pub(crate) fn duration(&mut self, min: Duration, max: Duration) -> Duration {
        let draw = self.next_u64();
        let span = u64::try_from(max.saturating_sub(min).as_nanos()).unwrap_or(u64::MAX);
        // Multiply-shift maps the draw onto 0..=span without modulo bias
        // worth the name; the result is at most span, so it fits in u64.
        let offset = ((u128::from(draw) * (u128::from(span) + 1)) >> 64) as u64;
        min + Duration::from_nanos(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let mut c = SplitMix64::new(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn chance_and_duration_stay_in_range() {
        let mut rng = SplitMix64::new(7);
        assert!((0..1000).all(|_| !rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        let (min, max) = (Duration::from_millis(5), Duration::from_millis(9));
        assert!((0..1000).all(|_| (min..=max).contains(&rng.duration(min, max))));
        assert_eq!(rng.duration(max, max), max);
        assert_eq!(rng.duration(Duration::ZERO, Duration::ZERO), Duration::ZERO);
    }
}
