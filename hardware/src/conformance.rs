//! The conformance suite every [`BootControl`] backend passes: [`check_boot_control`]. Exported so
//! other crates (the agent's fakes, the simulator) can run it against their own backends.

use std::fmt;

use crate::boot::select::MAX_TRIES;
use crate::boot::{BootControl, SimulatedBoot, SlotState};
use crate::error::BootError;
use crate::slot::Slot::{self, A, B};

/// The first check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceFailure {
    /// Backend name.
    pub backend: &'static str,
    /// Scenario name.
    pub scenario: &'static str,
    /// What was expected and what happened.
    pub detail: String,
}

impl fmt::Display for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} backend, scenario {:?}: {}",
            self.backend, self.scenario, self.detail
        )
    }
}

impl std::error::Error for ConformanceFailure {}

struct Run<'a, B> {
    boot: &'a mut B,
    scenario: &'static str,
    checks: usize,
}

impl<B: BootControl + SimulatedBoot> Run<'_, B> {
    fn fail(&self, detail: String) -> ConformanceFailure {
        ConformanceFailure {
            backend: self.boot.backend(),
            scenario: self.scenario,
            detail,
        }
    }

    fn ok<T>(&self, what: &str, r: Result<T, BootError>) -> Result<T, ConformanceFailure> {
        r.map_err(|e| self.fail(format!("{what} failed: {e}")))
    }

    fn expect<T: PartialEq + fmt::Debug>(
        &mut self,
        what: &str,
        got: T,
        want: T,
    ) -> Result<(), ConformanceFailure> {
        self.checks += 1;
        if got == want {
            Ok(())
        } else {
            Err(self.fail(format!("{what}: got {got:?}, want {want:?}")))
        }
    }

    fn boots_into(&mut self, want: Slot) -> Result<(), ConformanceFailure> {
        let got = self.boot.simulate_boot();
        let got = self.ok("simulate_boot", got)?;
        self.expect("booted slot", got, want)?;
        let current = self.boot.current_slot();
        let current = self.ok("current_slot", current)?;
        self.expect("current_slot after boot", current, want)
    }

    fn state(&mut self, slot: Slot, want: SlotState) -> Result<(), ConformanceFailure> {
        let got = self.boot.slot_state(slot);
        let got = self.ok("slot_state", got)?;
        self.expect(&format!("state of slot {slot}"), got, want)
    }

    fn call(&mut self, what: &str, r: fn(&mut B) -> Result<(), BootError>) -> Result<(), ConformanceFailure> {
        let result = r(self.boot);
        self.ok(what, result)
    }
}

/// One scenario of the suite.
type Scenario<B> = fn(&mut Run<'_, B>) -> Result<(), ConformanceFailure>;

const fn st(bootable: bool, successful: bool, tries_left: u8, priority: u8) -> SlotState {
    SlotState {
        bootable,
        successful,
        tries_left,
        priority,
    }
}

/// Run every scenario, each on a backend from `fresh` (an environment with factory contents or none
/// at all). Returns the number of checks made, or the first failure.
pub fn check_boot_control<B, F>(mut fresh: F) -> Result<usize, ConformanceFailure>
where
    B: BootControl + SimulatedBoot,
    F: FnMut() -> B,
{
    let scenarios: [(&str, Scenario<B>); 5] = [
        ("factory", factory),
        ("three failed boots fall back", failed_trial),
        ("commit and update back", commit),
        ("health failure", health_failure),
        ("invalid tries rejected", invalid_tries),
    ];
    let mut checks = 0;
    for (scenario, body) in scenarios {
        let mut boot = fresh();
        let mut run = Run {
            boot: &mut boot,
            scenario,
            checks: 0,
        };
        body(&mut run)?;
        checks += run.checks;
    }
    Ok(checks)
}

fn factory<B: BootControl + SimulatedBoot>(r: &mut Run<'_, B>) -> Result<(), ConformanceFailure> {
    r.boots_into(A)?;
    r.state(A, st(true, true, 0, 1))?;
    r.state(B, st(false, false, 0, 0))?;
    r.boots_into(A)
}

fn failed_trial<B: BootControl + SimulatedBoot>(r: &mut Run<'_, B>) -> Result<(), ConformanceFailure> {
    r.boots_into(A)?;
    r.call("set_next(B, 3)", |b| b.set_next(B, 3))?;
    r.state(B, st(true, false, 3, 2))?;
    r.state(A, st(true, true, 0, 1))?;
    for left in [2, 1, 0] {
        r.boots_into(B)?;
        r.state(B, st(left > 0, false, left, 2))?;
    }
    r.boots_into(A)?;
    r.state(B, st(false, false, 0, 0))?;
    r.state(A, st(true, true, 0, 1))?;
    r.boots_into(A)
}

fn commit<B: BootControl + SimulatedBoot>(r: &mut Run<'_, B>) -> Result<(), ConformanceFailure> {
    r.boots_into(A)?;
    r.call("mark_unbootable(B)", |b| b.mark_unbootable(B))?;
    r.call("set_next(B, 2)", |b| b.set_next(B, 2))?;
    r.boots_into(B)?;
    r.call("mark_successful(B)", |b| b.mark_successful(B))?;
    r.call("mark_successful(B) again", |b| b.mark_successful(B))?;
    for _ in 0..4 {
        r.boots_into(B)?;
    }
    r.state(B, st(true, true, 0, 2))?;
    r.state(A, st(true, true, 0, 1))?;
    r.call("set_next(A, 1)", |b| b.set_next(A, 1))?;
    r.state(A, st(true, false, 1, 2))?;
    r.state(B, st(true, true, 0, 1))?;
    r.boots_into(A)?;
    r.call("mark_successful(A)", |b| b.mark_successful(A))?;
    r.boots_into(A)?;
    r.state(A, st(true, true, 0, 2))
}

fn health_failure<B: BootControl + SimulatedBoot>(r: &mut Run<'_, B>) -> Result<(), ConformanceFailure> {
    r.boots_into(A)?;
    r.call("set_next(B, 3)", |b| b.set_next(B, 3))?;
    r.boots_into(B)?;
    r.call("mark_unbootable(B)", |b| b.mark_unbootable(B))?;
    r.state(B, st(false, false, 0, 0))?;
    r.boots_into(A)?;
    r.state(A, st(true, true, 0, 1))
}

fn invalid_tries<B: BootControl + SimulatedBoot>(r: &mut Run<'_, B>) -> Result<(), ConformanceFailure> {
    r.boots_into(A)?;
    for tries in [0, MAX_TRIES + 1] {
        let result = r.boot.set_next(B, tries);
        let rejected = matches!(result, Err(BootError::InvalidTries { .. }));
        r.expect(&format!("set_next(B, {tries}) rejected"), rejected, true)?;
    }
    r.state(B, st(false, false, 0, 0))?;
    r.call("set_next(B, MAX_TRIES)", |b| b.set_next(B, MAX_TRIES))?;
    r.state(B, st(true, false, MAX_TRIES, 2))
}
