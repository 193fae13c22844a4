//! Runs the fuzz target bodies (`halyard_hardware::fuzzing`) on stable: over the committed seed corpus
//! and a few thousand deterministic mutations of it, plus the inputs the fuzzers found crashes with.
//! A panic anywhere fails the test. Regenerate the seeds with
//! `HALYARD_REGENERATE_FIXTURES=1 cargo test -p halyard-hardware --test fuzz_smoke seed_corpus_exists`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use halyard_hardware::block::MemDevice;
use halyard_hardware::boot::grubenv::{DEFAULT_SIZE, GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::select::BootEnv;
use halyard_hardware::boot::ubootenv::{self, Layout};
use halyard_hardware::boot::vars::EnvVars;
use halyard_hardware::boot::{CurrentSlotSource, EnvBootControl};
use halyard_hardware::fuzzing;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The factory variables plus one that needs escaping in GRUB's format.
fn provisioned() -> EnvVars {
    let mut vars = EnvVars::new();
    vars.set("kernel_args", "quiet");
    BootEnv::factory().write_to(&mut vars);
    vars.set("note", "a\\b");
    vars
}

fn grubenv_seeds() -> Vec<(String, Vec<u8>)> {
    let empty = GrubEnvBlock::new(DEFAULT_SIZE).as_bytes().to_vec();
    let dev = MemDevice::from_bytes("grubenv", empty.clone());
    let mut control = EnvBootControl::new(GrubEnv::new(dev.clone()), CurrentSlotSource::Env);
    control.provision().unwrap();
    let provisioned = dev.snapshot();
    let mut small = GrubEnvBlock::new(128);
    small.set("a", "1").unwrap();
    small.set("multi", "line\none").unwrap();
    vec![
        ("seed-empty".into(), empty),
        ("seed-provisioned".into(), provisioned),
        ("seed-small".into(), small.as_bytes().to_vec()),
    ]
}

fn ubootenv_seeds() -> Vec<(String, Vec<u8>)> {
    let vars = provisioned();
    let single = ubootenv::encode(&vars, 256, Layout::Single, 0).unwrap();
    let mut redundant = ubootenv::encode(&vars, 256, Layout::Redundant, 1).unwrap();
    redundant.extend(ubootenv::encode(&vars, 256, Layout::Redundant, 2).unwrap());
    // Mode byte: bit 0 = redundant, bit 1 = the harness fixes the CRC.
    let with_mode = |mode: u8, image: &[u8]| [&[mode][..], image].concat();
    vec![
        ("seed-single".into(), with_mode(0, &single)),
        ("seed-single-fixcrc".into(), with_mode(2, &single)),
        ("seed-redundant".into(), with_mode(1, &redundant)),
        ("seed-redundant-fixcrc".into(), with_mode(3, &redundant)),
    ]
}

fn load(target: &str) -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn seed_corpus_exists() {
    if std::env::var_os("HALYARD_REGENERATE_FIXTURES").is_some() {
        for (target, seeds) in [("grubenv", grubenv_seeds()), ("ubootenv", ubootenv_seeds())] {
            fs::create_dir_all(corpus_dir(target)).unwrap();
            for (name, bytes) in seeds {
                fs::write(corpus_dir(target).join(name), bytes).unwrap();
            }
        }
    }
    // Every generated seed is committed as generated (the folders also hold crash regressions).
    for (target, seeds) in [("grubenv", grubenv_seeds()), ("ubootenv", ubootenv_seeds())] {
        let committed = load(target);
        for (name, bytes) in seeds {
            assert!(committed.contains(&bytes), "{target}/{name} is stale: regenerate");
        }
    }
}

/// xorshift64*: deterministic mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte edits biased towards the characters these formats give meaning to.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    const SPECIAL: &[u8] = b"=\n\\#\0\xff";
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(4) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] = SPECIAL[rng.below(SPECIAL.len())];
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 1 => {
                let i = rng.below(len - 1) + 1;
                input.remove(i);
            }
            _ => {
                let at = rng.below(len + 1);
                input.insert(at, SPECIAL[rng.below(SPECIAL.len())]);
            }
        }
    }
}

fn exercise(target: &str, body: fn(&[u8]), iterations: usize) {
    let seeds = load(target);
    for seed in &seeds {
        body(seed);
    }
    let mut rng = Rng(0x0123_4567_89ab_cdef ^ target.len() as u64);
    for _ in 0..iterations {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input);
        body(&input);
    }
    body(&[]);
}

#[test]
fn grubenv_survives_corpus_and_mutations() {
    exercise("grubenv", fuzzing::grubenv, 4000);
}

#[test]
fn ubootenv_survives_corpus_and_mutations() {
    exercise("ubootenv", fuzzing::ubootenv, 4000);
}

/// Found by the `grubenv` fuzz target: a last value ending in `\` escapes the block's final newline,
/// and `unset` then removed one byte past the content (index out of range); `set` dropped the newline.
#[test]
fn edits_after_a_value_ending_in_backslash_stay_inside_the_block() {
    let mut bytes = b"# GRUB Environment Block\nx=a\\\n".to_vec();
    bytes.resize(64, b'#');
    let block = GrubEnvBlock::from_bytes(bytes).unwrap();
    let mut unset = block.clone();
    unset.unset("x").unwrap();
    assert_eq!(unset, GrubEnvBlock::new(64));
    let mut set = block;
    set.set("x", "b").unwrap();
    assert!(!set.is_broken());
    assert_eq!(set.vars().get("x"), Some("b"));
    fuzzing::grubenv(set.as_bytes());
}
