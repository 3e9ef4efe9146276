//! Load over HTTP: 32 concurrent clients for a fixed time (60 s under `make soak`, 8 s under
//! `make test`) send a mix of valid deliveries (new events, redeliveries) and, on purpose, bad
//! ones (wrong CRM signature, malformed activity JSON, an activity nonce replayed with another
//! body). Every answer must be the one its request deserves: no other failure, ever.
//!
//! Meanwhile the resident memory of every function instance below `cargo lambda watch`
//! (`TEST_FUNCTIONS_PID`) is sampled once a second. Once an instance has served traffic for a
//! while its memory must stop growing: between the end of the warm-up (the first quarter) and the
//! end of the run it may grow by at most [`GROWTH_BOUND_KIB`], and no instance may ever exceed
//! [`PEAK_BOUND_KIB`]. These are debug builds under the emulator; the release figures for one
//! instance over 1,000 invocations are in docs/performance.md.
//!
//! The figures (throughput, latency percentiles, memory) are printed at the end of the test. The
//! seed of the clients' histories and choices is printed; `LOAD_SEED` replays it (the timing, and
//! so how far each client gets, still varies).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tests::deliver::send;
use tests::history::{Event, History, Shape, Source};
use tests::http::{activity_url, client, crm_url, dev_activity_secret, post, Answer};
use tests::procs::{self, Memory};
use tests::signing::now_unix;
use tests::stack::{self, unique_mid};
use tests::stats::nearest_rank;
use tests::tables::purge_tenant;

const CLIENTS: usize = 32;
/// Growth allowed to one instance after warm-up.
const GROWTH_BOUND_KIB: u64 = 8 * 1024;
/// Peak resident memory allowed to one instance (a debug build).
const PEAK_BOUND_KIB: u64 = 64 * 1024;

fn duration() -> Duration {
    Duration::from_secs(if stack::soak() { 60 } else { 8 })
}

/// What a request deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Valid,
    ForgedSignature,
    MalformedJson,
    ReplayedNonce,
}

impl Kind {
    fn expected(self) -> (u16, &'static str) {
        match self {
            Kind::Valid => (200, ""),
            Kind::ForgedSignature => (401, "invalid_signature"),
            Kind::MalformedJson => (400, "invalid_json"),
            Kind::ReplayedNonce => (401, "replayed_nonce"),
        }
    }

    fn matches(self, answer: &Answer) -> bool {
        match self {
            Kind::Valid => answer.status == 200,
            _ => {
                let (status, code) = self.expected();
                answer.status == status && answer.error_code().as_deref() == Some(code)
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    by_kind: BTreeMap<Kind, u64>,
    wrong: Vec<String>,
}

/// One client: its own events, cycled (so that later rounds are redeliveries), with bad requests
/// mixed in.
async fn client_loop(index: usize, seed: u64, mid: String, deadline: Instant, tally: Arc<Mutex<Tally>>) {
    let seed = seed ^ index as u64;
    let shape = Shape {
        entities: 6,
        events: 240,
        activity_share: 0.5,
        activity_spread_seconds: stack::activity_window_seconds() / 3,
    };
    let history = History::generate(seed, &mid, shape, now_unix(), dev_activity_secret());
    let deliveries = history.deliveries(seed, 0.1);
    let mut rng = StdRng::seed_from_u64(seed);
    let http = client();
    let mut accepted_callback: Option<Value> = None;
    let mut next = deliveries.iter().cycle();
    while Instant::now() < deadline {
        let event: &Event = next.next().expect("a cycle never ends");
        let kind = match rng.random_range(0..100) {
            0..=4 if event.source == Source::Crm => Kind::ForgedSignature,
            5..=9 => Kind::MalformedJson,
            10..=14 if accepted_callback.is_some() => Kind::ReplayedNonce,
            _ => Kind::Valid,
        };
        let started = Instant::now();
        let answer = match kind {
            Kind::Valid => send(&http, &mid, event).await,
            Kind::ForgedSignature => {
                let forged = "0".repeat(40);
                post(&http, &crm_url(), &[("X-Signature", &forged)], event.body.clone()).await
            }
            Kind::MalformedJson => {
                // Half a body, cut between characters: a cut inside a Chinese character makes a
                // body that is not UTF-8, which `cargo lambda watch` answers 500 itself before the
                // function sees it (bodies that are not UTF-8 are the matrix suite's, sent as
                // application/octet-stream).
                let cut = event.body.floor_char_boundary(event.body.len() / 2);
                post(&http, &activity_url(&mid), &[], event.body.as_bytes()[..cut].to_vec()).await
            }
            Kind::ReplayedNonce => {
                let mut replay = accepted_callback.clone().expect("checked above");
                replay["attributes"]["title"] = format!("replayed by client {index}").into();
                post(&http, &activity_url(&mid), &[], replay.to_string()).await
            }
        };
        let elapsed = started.elapsed();
        if kind == Kind::Valid && event.source == Source::Activity && answer.status == 200 {
            accepted_callback = serde_json::from_str(&event.body).ok();
        }
        let mut tally = tally.lock().expect("no client panicked holding the tally");
        tally.latencies.push(elapsed);
        *tally.by_kind.entry(kind).or_default() += 1;
        if !kind.matches(&answer) {
            tally.wrong.push(format!(
                "{kind:?} ({:?}): {} {}",
                event.source, answer.status, answer.body
            ));
        }
    }
}

/// Memory of each function instance, sampled until `deadline`: (first sample after `warm`,
/// last sample) per PID, and the name of each.
async fn sample_memory(root: u32, warm: Instant, deadline: Instant) -> BTreeMap<u32, (String, Memory, Memory)> {
    let mut samples: BTreeMap<u32, (String, Memory, Memory)> = BTreeMap::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let warmed = Instant::now() >= warm;
        for pid in procs::descendants(root) {
            let Some(name) = procs::name(pid) else { continue };
            if !(name.starts_with("crm-webhook") || name.starts_with("activity-callb")) {
                continue;
            }
            let Some(memory) = procs::memory(pid) else { continue };
            let entry = samples.entry(pid).or_insert((name, memory, memory));
            if !warmed {
                entry.1 = memory;
            }
            entry.2 = memory;
        }
    }
    samples
}

#[tokio::test]
#[ignore = "needs the local stack: `make test` runs it (cargo test -- --include-ignored)"]
async fn thirty_two_clients_get_exactly_the_answers_they_deserve_and_memory_stays_bounded() {
    let functions_pid: u32 = std::env::var("TEST_FUNCTIONS_PID")
        .expect("TEST_FUNCTIONS_PID is not set: run this test with `make test`")
        .parse()
        .expect("a PID");
    let seed = stack::seed("LOAD_SEED");
    let mid = unique_mid("load");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + duration();
    let memory = tokio::spawn(sample_memory(functions_pid, started + duration() / 4, deadline));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| tokio::spawn(client_loop(index, seed, mid.clone(), deadline, Arc::clone(&tally))))
        .collect();
    for client in clients {
        client.await.expect("a client finishes");
    }
    let elapsed = started.elapsed();
    let memory = memory.await.expect("the sampler finishes");
    let mut tally = std::mem::take(&mut *tally.lock().expect("clients are done"));

    tally.latencies.sort();
    let requests = tally.latencies.len();
    println!(
        "load: {CLIENTS} clients, {:.1} s, {requests} requests ({:.0}/s), latency p50 {:?} p90 {:?} p99 {:?} max {:?}; by kind {:?}",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        nearest_rank(&tally.latencies, 50),
        nearest_rank(&tally.latencies, 90),
        nearest_rank(&tally.latencies, 99),
        tally.latencies.last().copied().unwrap_or_default(),
        tally.by_kind
    );
    for (pid, (name, warm, last)) in &memory {
        println!(
            "load: instance {pid} {name}: RSS {} KiB after warm-up, {} KiB at the end, peak {} KiB",
            warm.rss_kib, last.rss_kib, last.peak_kib
        );
    }
    assert!(
        tally.wrong.is_empty(),
        "{} of {requests} answers were not the ones deserved, e.g.:\n{}",
        tally.wrong.len(),
        tally.wrong[..tally.wrong.len().min(10)].join("\n")
    );
    for kind in [
        Kind::Valid,
        Kind::ForgedSignature,
        Kind::MalformedJson,
        Kind::ReplayedNonce,
    ] {
        assert!(
            tally.by_kind.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind:?} request was sent"
        );
    }
    assert!(
        !memory.is_empty(),
        "no function instance found below pid {functions_pid}"
    );
    for (pid, (name, warm, last)) in &memory {
        assert!(
            last.rss_kib <= warm.rss_kib + GROWTH_BOUND_KIB,
            "{name} ({pid}) grew from {} KiB to {} KiB after warm-up",
            warm.rss_kib,
            last.rss_kib
        );
        assert!(
            last.peak_kib <= PEAK_BOUND_KIB,
            "{name} ({pid}) peaked at {} KiB",
            last.peak_kib
        );
    }
    purge_tenant(&stack::inspection_client(), &mid).await;
}
