//! The short fuzzing run of `make test` (the long one is `make fuzz`, 10 million inputs): mutated
//! webhook bodies of both sources through verification, parsing, normalization, merging and item
//! building, checked against the independent oracle (`tests::fuzz`). A new seed each run widens
//! the search; the seed is printed, and `FUZZ_SEED=N` replays it here, as
//! `cargo run --release -p tests --bin fuzz-ingest -- --seed N --execs M` does at length.

use tests::fuzz::Fuzzer;

const EXECS: u64 = 20_000;

#[test]
fn mutated_bodies_never_panic_and_accepted_ones_keep_the_invariants() {
    let seed: u64 = std::env::var("FUZZ_SEED").map_or_else(|_| rand::random(), |s| s.parse().expect("a number"));
    println!("fuzz seed {seed}");
    let mut fuzzer = Fuzzer::new(seed);
    if let Err(finding) = fuzzer.run(EXECS) {
        panic!(
            "seed {seed}, input {} ({:?}): {}\n{}",
            fuzzer.stats.execs,
            finding.target,
            finding.problem,
            String::from_utf8_lossy(&finding.input)
        );
    }
    let stats = &fuzzer.stats;
    assert_eq!(stats.execs, EXECS);
    // The mutations must not all die at the parser: a fair share gets all the way to an item.
    assert!(
        stats.crm_items > EXECS / 50,
        "too few CRM inputs reached an item: {stats:?}"
    );
    assert!(
        stats.activity_items > EXECS / 100,
        "too few activity inputs reached an item: {stats:?}"
    );
    for code in [
        "invalid_json",
        "missing_field",
        "invalid_field",
        "invalid_signature",
        "stale_timestamp",
    ] {
        assert!(
            stats.refusals.contains_key(code),
            "no input was refused with {code}: {stats:?}"
        );
    }
}
