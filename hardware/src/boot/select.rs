//! The boot contract as data: the variables ([`BootEnv`]), the agent's operations on them, and the
//! bootloader's own selection step ([`boot_attempt`]). `grub.cfg`, `uboot-boot.cmd`, the fakes, the
//! simulator and the initramfs selector all apply exactly these rules (see `docs/boot-contract.md`).

use super::SlotState;
use super::vars::EnvVars;
use crate::slot::Slot;

/// Highest try budget: the bootloader scripts count down from single digits.
pub const MAX_TRIES: u8 = 9;
/// Highest priority value the scripts understand.
pub const MAX_PRIORITY: u8 = 9;
/// Priority `set_next` gives the slot to try.
pub const PRIORITY_NEXT: u8 = 2;
/// Priority `set_next` leaves on the other slot when it is bootable (the fallback).
pub const PRIORITY_FALLBACK: u8 = 1;
/// Variable the bootloader sets to the slot it booted.
pub const VAR_BOOTED: &str = "HALYARD_BOOTED";

/// Variable names of one slot: `HALYARD_<S>_PRIORITY`, `_TRIES`, `_OK`.
pub fn var_names(slot: Slot) -> [&'static str; 3] {
    match slot {
        Slot::A => ["HALYARD_A_PRIORITY", "HALYARD_A_TRIES", "HALYARD_A_OK"],
        Slot::B => ["HALYARD_B_PRIORITY", "HALYARD_B_TRIES", "HALYARD_B_OK"],
    }
}

/// The stored state of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotVars {
    /// 0 = never boot; otherwise the higher wins.
    pub priority: u8,
    /// Boots left before the slot is given up (only counted while not successful).
    pub tries: u8,
    /// Marked good by the running system.
    pub successful: bool,
}

impl SlotVars {
    /// Whether the bootloader may pick this slot.
    pub fn bootable(&self) -> bool {
        self.priority > 0 && (self.successful || self.tries > 0)
    }
}

/// All Halyard boot variables. Missing or malformed values read as the factory defaults, exactly as
/// the bootloader scripts read them: A priority 1 and successful, B priority 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEnv {
    /// Indexed by [`Slot::index`].
    pub slots: [SlotVars; 2],
    /// The slot the bootloader picked at the last boot.
    pub booted: Option<Slot>,
}

impl Default for BootEnv {
    fn default() -> Self {
        Self::factory()
    }
}

fn digit(value: Option<&str>, max: u8) -> Option<u8> {
    match value?.as_bytes() {
        [d @ b'0'..=b'9'] if d - b'0' <= max => Some(d - b'0'),
        _ => None,
    }
}

impl BootEnv {
    /// A freshly installed device: slot A good, slot B empty.
    pub fn factory() -> Self {
        let a = SlotVars {
            priority: PRIORITY_FALLBACK,
            tries: 0,
            successful: true,
        };
        let b = SlotVars {
            priority: 0,
            tries: 0,
            successful: false,
        };
        Self {
            slots: [a, b],
            booted: None,
        }
    }

    /// Read the Halyard variables out of `vars` (other variables are ignored).
    pub fn from_vars(vars: &EnvVars) -> Self {
        let defaults = Self::factory();
        let mut env = defaults;
        for slot in Slot::ALL {
            let [prio, tries, ok] = var_names(slot);
            let d = defaults.slots[slot.index()];
            env.slots[slot.index()] = SlotVars {
                priority: digit(vars.get(prio), MAX_PRIORITY).unwrap_or(d.priority),
                tries: digit(vars.get(tries), MAX_TRIES).unwrap_or(0),
                successful: match vars.get(ok) {
                    Some("1") => true,
                    Some("0") => false,
                    _ => d.successful,
                },
            };
        }
        env.booted = vars.get(VAR_BOOTED).and_then(|s| {
            if s == "A" || s == "B" {
                s.parse().ok()
            } else {
                None
            }
        });
        env
    }

    /// Write the Halyard variables into `vars` (in place where present). Returns whether it changed.
    pub fn write_to(&self, vars: &mut EnvVars) -> bool {
        let mut changed = false;
        for slot in Slot::ALL {
            let [prio, tries, ok] = var_names(slot);
            let s = self.slot(slot);
            changed |= vars.set(prio, &s.priority.to_string());
            changed |= vars.set(tries, &s.tries.to_string());
            changed |= vars.set(ok, if s.successful { "1" } else { "0" });
        }
        if let Some(booted) = self.booted {
            changed |= vars.set(VAR_BOOTED, booted.letter());
        }
        changed
    }

    /// The variables of `slot`.
    pub fn slot(&self, slot: Slot) -> &SlotVars {
        &self.slots[slot.index()]
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut SlotVars {
        &mut self.slots[slot.index()]
    }

    /// The public view of `slot`.
    pub fn state(&self, slot: Slot) -> SlotState {
        let s = self.slot(slot);
        SlotState {
            bootable: s.bootable(),
            successful: s.successful,
            tries_left: s.tries,
            priority: s.priority,
        }
    }

    /// Try `slot` next with `tries` boots (1..=[`MAX_TRIES`], checked by the caller); the other slot
    /// stays as fallback if it is bootable.
    pub fn set_next(&mut self, slot: Slot, tries: u8) {
        *self.slot_mut(slot) = SlotVars {
            priority: PRIORITY_NEXT,
            tries,
            successful: false,
        };
        let other = self.slot_mut(slot.other());
        if other.priority > 0 {
            other.priority = PRIORITY_FALLBACK;
        }
    }

    /// The running system vouches for `slot`: successful, no trial left to count, bootable again.
    pub fn mark_successful(&mut self, slot: Slot) {
        let s = self.slot_mut(slot);
        s.successful = true;
        s.tries = 0;
        s.priority = s.priority.max(PRIORITY_FALLBACK);
    }

    /// Never boot `slot` (it is being rewritten or it failed).
    pub fn mark_unbootable(&mut self, slot: Slot) {
        *self.slot_mut(slot) = SlotVars {
            priority: 0,
            tries: 0,
            successful: false,
        };
    }
}

/// The bootloader's step at each boot, as a pure function: give up slots whose tries ran out without
/// a success mark (priority 0), pick the bootable slot with the highest priority (A on a tie; A when
/// none is bootable, as a last resort), take one try from it if it is not yet successful, and record
/// it as booted. Returns the slot to boot and the environment to save before booting it.
pub fn boot_attempt(env: &BootEnv) -> (Slot, BootEnv) {
    let mut next = *env;
    for slot in Slot::ALL {
        let s = next.slot_mut(slot);
        if s.priority > 0 && !s.successful && s.tries == 0 {
            s.priority = 0;
        }
    }
    let chosen = if next.slot(Slot::B).priority > next.slot(Slot::A).priority {
        Slot::B
    } else {
        Slot::A
    };
    let s = next.slot_mut(chosen);
    if !s.successful && s.tries > 0 {
        s.tries -= 1;
    }
    next.booted = Some(chosen);
    (chosen, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failed_boots_fall_back_with_b_unbootable() {
        let mut env = BootEnv::factory();
        env.set_next(Slot::B, 3);
        for left in [2, 1, 0] {
            let (slot, next) = boot_attempt(&env);
            assert_eq!((slot, next.slot(Slot::B).tries), (Slot::B, left));
            env = next;
        }
        let (slot, env) = boot_attempt(&env);
        assert_eq!(slot, Slot::A);
        assert!(!env.state(Slot::B).bootable);
        assert_eq!(env.slot(Slot::B).priority, 0);
        assert_eq!(
            boot_attempt(&env),
            (Slot::A, env),
            "a settled environment is a fixed point"
        );
    }

    #[test]
    fn success_mark_stops_counting() {
        let mut env = BootEnv::factory();
        env.set_next(Slot::B, 1);
        let (_, mut env) = boot_attempt(&env);
        env.mark_successful(Slot::B);
        for _ in 0..5 {
            let (slot, next) = boot_attempt(&env);
            assert_eq!(slot, Slot::B);
            env = next;
        }
        assert_eq!(
            env.state(Slot::A),
            SlotState {
                bootable: true,
                successful: true,
                tries_left: 0,
                priority: 1
            }
        );
    }

    #[test]
    fn malformed_values_read_as_defaults() {
        let vars: EnvVars = [
            ("HALYARD_A_PRIORITY", "x"),
            ("HALYARD_B_PRIORITY", "12"),
            ("HALYARD_B_OK", "yes"),
            (VAR_BOOTED, "C"),
        ]
        .into_iter()
        .collect();
        assert_eq!(BootEnv::from_vars(&vars), BootEnv::factory());
        let mut round = EnvVars::new();
        let mut env = BootEnv::factory();
        env.set_next(Slot::B, 9);
        env.booted = Some(Slot::A);
        assert!(env.write_to(&mut round));
        assert!(!env.write_to(&mut round));
        assert_eq!(BootEnv::from_vars(&round), env);
    }

    #[test]
    fn nothing_bootable_boots_a_unchanged() {
        let mut env = BootEnv::factory();
        env.mark_unbootable(Slot::A);
        let (slot, next) = boot_attempt(&env);
        assert_eq!(slot, Slot::A);
        assert_eq!(next.slots, env.slots);
    }
}
