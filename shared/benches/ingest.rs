//! The pure ingest path, per delivery: verify → parse → normalize → merge into an empty state →
//! build the item. No timing is asserted anywhere; this only reports.
//!
//!     cargo bench -p webhook-model --bench ingest -- --quick

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webhook_model::activity::verify::{self as activity_verify, SignedFields};
use webhook_model::activity::{ActivityEvent, ActivityState};
use webhook_model::clock::FixedClock;
use webhook_model::crm::verify as crm_verify;
use webhook_model::crm::{CrmEvent, CrmState};
use webhook_model::envelope::Envelope;
use webhook_model::item::Item;
use webhook_model::merge::Mergeable;
use webhook_model::secret::{Secret, SecretSet};
use webhook_model::timefmt::SourceOffset;

const UPDATED_AT: &str = "2026-01-01T00:00:00Z";
const CRM_SECRET: &str = "bench-crm-secret";
const ACTIVITY_SECRET: &str = "dev-activity-secret";

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(kind)
}

fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir(kind))
        .expect("fixtures directory")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// What the CRM function does with one request body, short of the store.
fn crm_ingest(body: &[u8], signature: &str, secrets: &SecretSet) -> Item {
    crm_verify::verify(body, "X-Signature", Some(signature), secrets).expect("signed");
    let envelope = Envelope::parse(body).expect("JSON object");
    let event = CrmEvent::from_envelope(envelope, SourceOffset::BEIJING).expect("normalizes");
    CrmState::merge(None, &event).to_item(UPDATED_AT)
}

/// What the activity function does with one request body, short of the store. `None` for
/// actions that name no activity (`doc/add`): verified and normalized, not merged.
fn activity_ingest(body: &[u8], secrets: &SecretSet, clock: &FixedClock) -> Option<Item> {
    let envelope = Envelope::parse(body).expect("JSON object");
    let signed = SignedFields::extract(&envelope.object).expect("signed fields");
    activity_verify::verify(&signed, secrets, clock, 300).expect("signed");
    let event = ActivityEvent::from_envelope(envelope, "124", &signed.nonce, signed.timestamp, SourceOffset::BEIJING)
        .expect("normalizes");
    event
        .action
        .names_an_activity()
        .then(|| ActivityState::merge(None, &event).to_item(UPDATED_AT))
}

fn timestamp_of(body: &[u8]) -> i64 {
    let envelope = Envelope::parse(body).unwrap();
    SignedFields::extract(&envelope.object).unwrap().timestamp
}

fn ingest(c: &mut Criterion) {
    let crm_secrets = SecretSet::parse(CRM_SECRET).unwrap();
    let activity_secrets = SecretSet::parse(ACTIVITY_SECRET).unwrap();

    let seed = std::fs::read(fixture_dir("crm").join("seed_124_object_create.json")).unwrap();
    let seed_signature = crm_verify::sign(&seed, &Secret::new(CRM_SECRET));
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(seed.len() as u64));
    group.bench_function("crm/seed_124_object_create", |b| {
        b.iter(|| crm_ingest(black_box(&seed), black_box(&seed_signature), &crm_secrets))
    });
    let add = std::fs::read(fixture_dir("activity").join("event_add.json")).unwrap();
    let clock = FixedClock(timestamp_of(&add));
    group.throughput(Throughput::Bytes(add.len() as u64));
    group.bench_function("activity/event_add", |b| {
        b.iter(|| activity_ingest(black_box(&add), &activity_secrets, &clock).expect("an item"))
    });
    group.finish();

    let mut group = c.benchmark_group("crm_fixtures");
    for (name, body) in fixtures("crm") {
        let signature = crm_verify::sign(&body, &Secret::new(CRM_SECRET));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&name), &body, |b, body| {
            b.iter(|| crm_ingest(black_box(body), &signature, &crm_secrets))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("activity_fixtures");
    for (name, body) in fixtures("activity") {
        let clock = FixedClock(timestamp_of(&body));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&name), &body, |b, body| {
            b.iter(|| activity_ingest(black_box(body), &activity_secrets, &clock))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Modest defaults for a 2-core machine; `--quick` or `--measurement-time` override them.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = ingest
}
criterion_main!(benches);
