//! Unit tests of the step encodings.

use super::apply::ApplyStep;
use super::convergence::ConvergeStep;
use super::seeds::{apply_seeds, converge_seeds};

#[test]
fn steps_round_trip_through_their_encoding() {
    for (_, bytes) in apply_seeds() {
        let steps = ApplyStep::parse(&bytes);
        assert_eq!(ApplyStep::encode(&steps), bytes);
    }
    for (_, bytes) in converge_seeds() {
        let (skews, steps) = ConvergeStep::parse(&bytes);
        assert_eq!(ConvergeStep::encode(skews, &steps), bytes);
    }
}
