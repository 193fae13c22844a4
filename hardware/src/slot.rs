//! The A/B slot identifier shared by boot control, slot devices and the bootloader scripts.

use std::fmt;
use std::str::FromStr;

/// One of the two root slots. Bootloader variables spell them `A` and `B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// The first slot (the factory slot: bootable and successful on a fresh environment).
    A,
    /// The second slot.
    B,
}

impl Slot {
    /// Both slots in bootloader preference order (A wins ties).
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot: the one an update writes to.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The letter used in variable names and on the kernel command line.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// Index 0 for A, 1 for B.
    pub fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// The text was neither `A` nor `B`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a slot name: {0:?} (expected A or B)")]
pub struct ParseSlotError(pub String);

impl FromStr for Slot {
    type Err = ParseSlotError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "A" | "a" => Ok(Slot::A),
            "B" | "b" => Ok(Slot::B),
            other => Err(ParseSlotError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_and_parse_round_trip() {
        for slot in Slot::ALL {
            assert_ne!(slot.other(), slot);
            assert_eq!(slot.other().other(), slot);
            assert_eq!(slot.letter().parse::<Slot>(), Ok(slot));
        }
        assert!("C".parse::<Slot>().is_err());
    }
}
