//! Depth tracking shared by [`to_value`] and [`from_value`].

use super::{MAX_DEPTH, Value, ValueError};
#[cfg(doc)]
use super::{from_value, to_value};

/// Shorthand for the results of the `value` module's serializer and deserializer.
pub(super) type Res<T = Value> = Result<T, ValueError>;

/// The most transparent wrappers (`Some`, newtype structs) [`to_value`] and [`from_value`]
/// pass through on the way to one value: two per level on average. They add no nesting
/// to the `Value` but do recurse, and a self-referential newtype could otherwise recurse
/// without end.
const MAX_WRAPPERS: usize = 2 * MAX_DEPTH;

/// Where the serializer or deserializer is: the nesting level of the value at hand (1 at
/// the top) and how many transparent wrappers lead to it. Both are bounded, so neither
/// [`to_value`] nor [`from_value`] recurses more than a fixed number of times.
#[derive(Debug, Clone, Copy)]
pub(super) struct Depth {
    level: usize,
    wrappers: usize,
}

impl Depth {
    pub(super) const TOP: Depth = Depth {
        level: 1,
        wrappers: 0,
    };

    /// The place of an element, entry or variant content of the value at `self`; not
    /// yet checked against [`MAX_DEPTH`].
    pub(super) fn deeper(self) -> Depth {
        Depth {
            level: self.level + 1,
            ..self
        }
    }

    /// `self`, or [`ValueError::TooDeep`] if it lies beyond [`MAX_DEPTH`].
    pub(super) fn check(self) -> Res<Depth> {
        if self.level > MAX_DEPTH {
            return Err(ValueError::TooDeep { max: MAX_DEPTH });
        }
        Ok(self)
    }

    /// The checked place of an element, entry or variant content of the value at `self`.
    pub(super) fn child(self) -> Res<Depth> {
        self.deeper().check()
    }

    /// The same place behind one more transparent wrapper, refused past [`MAX_WRAPPERS`].
    pub(super) fn wrapped(self) -> Res<Depth> {
        if self.wrappers >= MAX_WRAPPERS {
            return Err(ValueError::TooDeep { max: MAX_DEPTH });
        }
        Ok(Depth {
            wrappers: self.wrappers + 1,
            ..self
        })
    }
}
