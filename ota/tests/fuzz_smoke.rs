//! Runs the fuzz target bodies (`halyard_ota::fuzzing`) on stable: over the committed seed corpus and a
//! few thousand deterministic mutations of it. A panic anywhere fails the test. Regenerate the seeds with
//! `HALYARD_REGENERATE_FIXTURES=1 cargo test -p halyard-ota --test fuzz_smoke seed_corpus_exists`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use halyard_ota::delta::{self, DiffOptions};
use halyard_ota::fuzzing::{self, fixed_source, pseudo_random_image};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn patch_seeds() -> Vec<(String, Vec<u8>)> {
    let source = fixed_source();
    let mut edited = source.to_vec();
    edited[1000..1100].fill(0);
    let mut appended = source.to_vec();
    appended.extend_from_slice(&pseudo_random_image(5000, 3));
    let variants = [
        ("edit", edited),
        ("append", appended),
        ("unrelated", pseudo_random_image(20_000, 9)),
    ];
    variants
        .into_iter()
        .map(|(name, target)| {
            let mut patch = Vec::new();
            delta::diff(source, &target, &DiffOptions::default(), &mut patch).unwrap();
            (format!("seed-{name}.patch"), patch)
        })
        .collect()
}

fn bundle_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for entry in fs::read_dir(data_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        seeds.push((
            format!("seed-{name}.hlyb"),
            fs::read(dir.join("bundle.hlyb")).unwrap(),
        ));
    }
    seeds.push((
        "seed-root.json".to_owned(),
        fuzzing::fixture_root_file(1).to_json(),
    ));
    seeds.sort();
    seeds
}

fn manifest_seeds() -> Vec<(String, Vec<u8>)> {
    signed_bundle_seeds()
        .into_iter()
        .map(|(name, input)| {
            let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
            (name.replace(".input", ".json"), input[2..2 + len].to_vec())
        })
        .collect()
}

fn signed_bundle_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for name in [
        "valid",
        "valid-delta",
        "payload-hash-mismatch",
        "trailing-garbage",
    ] {
        let bundle = fs::read(data_dir().join(name).join("bundle.hlyb")).unwrap();
        let input = fuzzing::signed_bundle_input(&bundle).unwrap();
        seeds.push((format!("seed-{name}.input"), input));
    }
    seeds
}

fn trust_root_seeds() -> Vec<(String, Vec<u8>)> {
    let root = fuzzing::fixture_root_file(1);
    let mut next = halyard_ota::root::RootFile::unsigned(root.signed.next_version(fuzzing::ROOT_EXPIRES));
    next.sign(&halyard_ota::keys::PrivateKey::from_seed(&fuzzing::ROOT_SEED));
    vec![
        ("seed-root.json".to_owned(), root.to_json()),
        (
            "seed-root-threshold2.json".to_owned(),
            fuzzing::fixture_root_file(2).to_json(),
        ),
        ("seed-root-next.json".to_owned(), next.to_json()),
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
        let targets = [
            ("bundle_reader", bundle_seeds()),
            ("patch_apply", patch_seeds()),
            ("manifest", manifest_seeds()),
            ("trust_root", trust_root_seeds()),
            ("signed_bundle", signed_bundle_seeds()),
        ];
        for (target, seeds) in targets {
            fs::create_dir_all(corpus_dir(target)).unwrap();
            for (name, bytes) in seeds {
                fs::write(corpus_dir(target).join(name), bytes).unwrap();
            }
        }
    }
    assert!(load("bundle_reader").len() >= 10);
    assert!(load("patch_apply").len() >= 3);
    assert!(load("manifest").len() >= 4);
    assert!(load("trust_root").len() >= 3);
    assert!(load("signed_bundle").len() >= 4);
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

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => input.truncate(rng.below(len + 1)),
            3 => {
                let at = rng.below(len + 1);
                let extra: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, extra);
            }
            4 if len >= 4 => {
                // Interesting length values where a length field may sit.
                let at = rng.below(len - 3);
                let value = [0u32, 1, 0x7fff_ffff, u32::MAX, 65_536, 65_537][rng.below(6)];
                input[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
            _ if len > 1 => {
                let from = rng.below(len);
                let to = (from + rng.below(256)).min(len);
                let chunk = input[from..to].to_vec();
                let at = rng.below(len);
                input.splice(at..at, chunk);
            }
            _ => input.push(rng.next() as u8),
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
    let random: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    body(&random);
    body(&[]);
}

#[test]
fn bundle_reader_survives_corpus_and_mutations() {
    exercise("bundle_reader", fuzzing::bundle_reader, 4000);
}

#[test]
fn patch_apply_survives_corpus_and_mutations() {
    exercise("patch_apply", fuzzing::patch_apply, 4000);
}

#[test]
fn manifest_survives_corpus_and_mutations() {
    exercise("manifest", fuzzing::manifest, 4000);
}

#[test]
fn trust_root_survives_corpus_and_mutations() {
    exercise("trust_root", fuzzing::trust_root, 2000);
}

#[test]
fn signed_bundle_survives_corpus_and_mutations() {
    exercise("signed_bundle", fuzzing::signed_bundle, 2000);
}
