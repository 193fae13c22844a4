//! Halyard's rollout engine: a pure function of (rollout, device states, sites, now) → actions,
//! with injected time and seed. No I/O, no clock reads, no global randomness.
//!
//! The server calls [`step`] on every tick and after each device report, and [`command()`] for
//! operator commands; it applies the returned [`Action`]s, records the [`Decision`]s and stores
//! the returned [`RolloutState`] (JSON) in one transaction. Calls are idempotent: every action is
//! issued once, and a second call with the same inputs returns nothing new.
//! The contract is in `docs/rollout.md`.
//!
//! Module map:
//! - [`policy`]: [`RolloutSpec`], [`Policy`], waves, budgets, breach reaction, validation.
//! - [`device`]: [`DeviceView`] and [`Phase`], and how a report reads (committed, failed, busy).
//! - [`windows`]: [`Site`], maintenance windows in the site's time zone (DST, wrap past midnight).
//! - [`state`]: [`RolloutState`], [`Status`], per-wave and per-device records.
//! - [`output`]: [`Step`], [`Action`], [`Decision`].
//! - [`mod@command`]: [`command()`], [`Command`], [`CommandError`] (one `match (command, status)`).
//! - `canary`: seeded wave plan; wave 1 covers every hardware class, waves spread across sites.
//! - `rng`: splitmix64 and per-device seeded ranks.
//! - `engine`: [`step`]: plan, observe, budget, advance, assign.
//! - `plan`, `observe`, `assign`, `revert`: the parts of a step.
//! - `quiet`: [`quiet_until`], how long a step cannot change anything unless its inputs do.

mod assign;
pub mod canary;
pub mod command;
pub mod device;
mod engine;
mod observe;
pub mod output;
mod plan;
pub mod policy;
mod quiet;
mod revert;
pub mod rng;
pub mod state;
pub mod windows;

pub use command::{Command, CommandError, command};
pub use device::{DeviceView, Phase};
pub use engine::step;
pub use output::{Action, Decision, DecisionKind, Step};
pub use policy::{Breach, Budget, Policy, PolicyError, RolloutSpec, WaveSize, WaveSpec};
pub use quiet::quiet_until;
pub use state::{DeviceRecord, Exit, Failure, FailureKind, RolloutState, Status, WaveState};
pub use windows::{MaintenanceWindow, Site, SiteError, Weekday, Window, WindowState};
