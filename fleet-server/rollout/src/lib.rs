//! Halyard's rollout engine: a pure function of (rollout, device states, sites, now) → actions, with
//! injected time and seed. No I/O, no clock reads. (Being built for issue 5.)
