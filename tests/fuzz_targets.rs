//! The fuzz targets (`fuzz/targets.rs`) on the stable toolchain: each runs over its checked-in
//! corpus (`fuzz/corpus/<target>/`) and over thousands of inputs mutated from it by a seeded
//! generator (byte flips, insertions, deletions, splices of two seeds, repeats). A panic, or a
//! property a target asserts, fails the test. `cargo fuzz run <target>` (in `fuzz/`) runs the
//! same bodies coverage-guided; see `fuzz/README.md`.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutated inputs per target.
const CASES: usize = 20_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{target} has a corpus");
    seeds
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let at = rng.random_range(0..len);
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let at = rng.random_range(0..len);
                bytes[at] = rng.random();
            }
            2 => {
                let at = rng.random_range(0..=len);
                let interesting = [
                    b'"', b'\\', b'{', b'}', b':', b',', b'.', b'=', 0, 0xff, b'9',
                ];
                bytes.insert(at, interesting[rng.random_range(0..interesting.len())]);
            }
            3 if len > 0 => {
                let from = rng.random_range(0..len);
                let to = rng.random_range(from..=len);
                bytes.drain(from..to);
            }
            4 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=bytes.len());
                let from = rng.random_range(0..=other.len());
                bytes.truncate(cut);
                bytes.extend_from_slice(&other[from..]);
            }
            5 if len > 0 && len < 4096 => {
                let from = rng.random_range(0..len);
                let chunk = bytes[from..].to_vec();
                bytes.extend_from_slice(&chunk);
            }
            _ => bytes.push(rng.random()),
        }
    }
    bytes
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations_of_it() {
    for (name, target) in targets::TARGETS {
        let seeds = corpus(name);
        for seed in &seeds {
            target(seed);
        }
        let mut rng = StdRng::seed_from_u64(0xf022_0000 ^ name.len() as u64);
        for _ in 0..CASES {
            let input = mutate(&mut rng, &seeds);
            let result = std::panic::catch_unwind(|| target(&input));
            if result.is_err() {
                panic!("{name} panicked on {:?}", String::from_utf8_lossy(&input));
            }
        }
    }
}
