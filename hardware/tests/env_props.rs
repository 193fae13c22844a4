//! Property tests of the env encoders that need no external tool: GRUB block round trips with any
//! value (escapes included), Halyard variables round trip through every store, and `boot_attempt`
//! never leaves the environment without a bootable slot when it started with one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use halyard_hardware::Slot;
use halyard_hardware::boot::grubenv::{DEFAULT_SIZE, GrubEnvBlock};
use halyard_hardware::boot::select::{BootEnv, MAX_PRIORITY, MAX_TRIES, SlotVars, boot_attempt};
use halyard_hardware::boot::vars::EnvVars;
use proptest::prelude::*;

fn slot_vars() -> impl Strategy<Value = SlotVars> {
    (0..=MAX_PRIORITY, 0..=MAX_TRIES, any::<bool>()).prop_map(|(priority, tries, successful)| SlotVars {
        priority,
        tries,
        successful,
    })
}

fn boot_env() -> impl Strategy<Value = BootEnv> {
    (
        slot_vars(),
        slot_vars(),
        proptest::option::of(prop_oneof![Just(Slot::A), Just(Slot::B)]),
    )
        .prop_map(|(a, b, booted)| BootEnv {
            slots: [a, b],
            booted,
        })
}

proptest! {
    #[test]
    fn grub_block_round_trips_any_values(
        pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,10}", "(?s).{0,40}"), 0..12)
    ) {
        let vars: EnvVars = pairs.into_iter().collect();
        let mut block = GrubEnvBlock::new(DEFAULT_SIZE);
        let fits = vars.iter().all(|(k, v)| block.set(k, v).is_ok());
        if fits {
            prop_assert_eq!(block.vars(), vars);
            prop_assert_eq!(block.as_bytes().len(), DEFAULT_SIZE);
            let again = GrubEnvBlock::from_bytes(block.as_bytes().to_vec()).unwrap();
            prop_assert_eq!(again.vars(), block.vars());
        }
    }

    #[test]
    fn boot_env_round_trips_through_vars(env in boot_env()) {
        let mut vars: EnvVars = [("bootcmd", "run halyard")].into_iter().collect();
        env.write_to(&mut vars);
        prop_assert_eq!(BootEnv::from_vars(&vars), env);
        prop_assert_eq!(vars.get("bootcmd"), Some("run halyard"));
    }

    #[test]
    fn boot_attempt_keeps_a_bootable_slot_and_is_idempotent_on_good_slots(env in boot_env()) {
        let (slot, next) = boot_attempt(&env);
        let was_bootable = Slot::ALL.iter().any(|s| env.state(*s).bootable);
        prop_assert_eq!(env.state(slot).bootable, was_bootable);
        prop_assert_eq!(next.booted, Some(slot));
        if env.slot(slot).successful {
            prop_assert_eq!(boot_attempt(&next), (slot, next));
        }
    }
}
