//! The pure ingest path, per delivery, in the order the handlers take it: parse → tenant →
//! verify → normalize → merge into an empty state → build the item (with its `updated_at`).
//! Only what the functions do once at start-up (reading the secrets) and what the sender does
//! (signing) happen outside the measured closures. No timing is asserted anywhere; this only
//! reports.
//!
//!     cargo bench -p webhook-model --bench ingest -- --quick

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webhook_model::activity::verify::SignedFields;
use webhook_model::activity::{self, ActivityState};
use webhook_model::clock::{Clock, FixedClock};
use webhook_model::crm::{self, verify as crm_verify, CrmState};
use webhook_model::envelope::Envelope;
use webhook_model::item::Item;
use webhook_model::merge::Mergeable;
use webhook_model::secret::{Secret, TenantSecrets};
use webhook_model::timefmt::{utc_rfc3339, SourceOffset};

const CRM_SECRET: &str = "bench-crm-secret";
const ACTIVITY_SECRET: &str = "dev-activity-secret";
/// The tenant the activity fixtures are posted for (the handler reads it from the path).
const ACTIVITY_MID: &str = "124";
/// The receiver's clock when a CRM event arrives (`updated_at`).
const CRM_NOW: FixedClock = FixedClock(1_767_225_600);

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

/// The secrets as the functions read them at start-up: one default set from the environment.
fn tenant_secrets(prefix: &str, secret: &str) -> TenantSecrets {
    TenantSecrets::from_vars(prefix, [(prefix, secret)])
}

/// What the CRM function does with one request body, short of the store.
fn crm_ingest(body: &[u8], signature: &str, secrets: &TenantSecrets, clock: &dyn Clock) -> Item {
    let event = crm::verified_event(body, "X-Signature", Some(signature), secrets, SourceOffset::BEIJING)
        .expect("signed and normalizes");
    CrmState::merge(None, &event).to_item(&utc_rfc3339(clock.now_unix()))
}

/// What the activity function does with one request body, short of the store. `None` for
/// actions that name no activity (`doc/add`): verified and normalized, not merged.
fn activity_ingest(body: &[u8], secrets: &TenantSecrets, clock: &dyn Clock) -> Option<Item> {
    let event = activity::verified_event(body, Some(ACTIVITY_MID), secrets, clock, 300, SourceOffset::BEIJING)
        .expect("signed and normalizes");
    event
        .action
        .names_an_activity()
        .then(|| ActivityState::merge(None, &event).to_item(&utc_rfc3339(clock.now_unix())))
}

fn timestamp_of(body: &[u8]) -> i64 {
    let envelope = Envelope::parse(body).unwrap();
    SignedFields::extract(&envelope.object).unwrap().timestamp
}

fn ingest(c: &mut Criterion) {
    let crm_secrets = tenant_secrets("CRM_WEBHOOK_SECRET", CRM_SECRET);
    let activity_secrets = tenant_secrets("ACTIVITY_SECRET", ACTIVITY_SECRET);

    let seed = std::fs::read(fixture_dir("crm").join("seed_124_object_create.json")).unwrap();
    let seed_signature = crm_verify::sign(&seed, &Secret::new(CRM_SECRET));
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(seed.len() as u64));
    group.bench_function("crm/seed_124_object_create", |b| {
        b.iter(|| crm_ingest(black_box(&seed), black_box(&seed_signature), &crm_secrets, &CRM_NOW))
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
            b.iter(|| crm_ingest(black_box(body), black_box(&signature), &crm_secrets, &CRM_NOW))
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
