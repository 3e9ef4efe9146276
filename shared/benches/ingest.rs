//! The pure ingest path, per delivery, in the order the handlers take it: parse → tenant →
//! verify → normalize → merge into an empty state → build the item (with its `updated_at`).
//! Only what the functions do once at start-up (reading the secrets) and what the sender does
//! (signing) happen outside the measured closures. No timing is asserted anywhere; this only
//! reports.
//!
//!     cargo bench -p shared --bench ingest -- --quick

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::activity::verify::{Freshness, SignedFields};
use shared::activity::{ActivityIntake, ActivityState};
use shared::clock::{Clock, FixedClock};
use shared::crm::{verify as crm_verify, CrmIntake, CrmState};
use shared::envelope::Envelope;
use shared::item::Item;
use shared::merge::Mergeable;
use shared::secret::{Secret, TenantSecrets};
use shared::timefmt::{utc_rfc3339, SourceOffset};

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
fn crm_ingest(body: &[u8], signature: &str, intake: &CrmIntake, clock: &dyn Clock) -> Item {
    let event = intake
        .verified_event(body, Some(signature))
        .expect("signed and normalizes");
    CrmState::merge(None, &event).to_item(&utc_rfc3339(clock.now_unix()))
}

/// What the activity function does with one request body, short of the store. `None` for
/// actions that name no activity (`doc/add`): verified and normalized, not merged.
fn activity_ingest(body: &[u8], intake: &ActivityIntake) -> Option<Item> {
    let event = intake
        .verified_event(body, Some(ACTIVITY_MID))
        .expect("signed and normalizes");
    let now = intake.clock.now_unix();
    event
        .action
        .names_an_activity()
        .then(|| ActivityState::merge(None, &event).to_item(&utc_rfc3339(now)))
}

/// The activity intake as the function builds it, with the clock at the callback's own time.
fn activity_intake_at(secrets: &TenantSecrets, body: &[u8]) -> ActivityIntake {
    let mut intake = ActivityIntake::new(secrets.clone(), Freshness::DEFAULT, SourceOffset::BEIJING);
    intake.clock = Arc::new(FixedClock(timestamp_of(body)));
    intake
}

fn timestamp_of(body: &[u8]) -> i64 {
    let envelope = Envelope::parse(body).unwrap();
    SignedFields::extract(&envelope.object).unwrap().timestamp
}

fn ingest(c: &mut Criterion) {
    let crm = CrmIntake {
        signature_header: "X-Signature".to_owned(),
        scheme: Default::default(),
        secrets: tenant_secrets("CRM_WEBHOOK_SECRET", CRM_SECRET),
        offset: SourceOffset::BEIJING,
    };
    let activity_secrets = tenant_secrets("ACTIVITY_SECRET", ACTIVITY_SECRET);

    let seed = std::fs::read(fixture_dir("crm").join("seed_124_object_create.json")).unwrap();
    let seed_signature = crm_verify::sign(&seed, &Secret::new(CRM_SECRET));
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(seed.len() as u64));
    group.bench_function("crm/seed_124_object_create", |b| {
        b.iter(|| crm_ingest(black_box(&seed), black_box(&seed_signature), &crm, &CRM_NOW))
    });
    let add = std::fs::read(fixture_dir("activity").join("event_add.json")).unwrap();
    let intake = activity_intake_at(&activity_secrets, &add);
    group.throughput(Throughput::Bytes(add.len() as u64));
    group.bench_function("activity/event_add", |b| {
        b.iter(|| activity_ingest(black_box(&add), &intake).expect("an item"))
    });
    group.finish();

    let mut group = c.benchmark_group("crm_fixtures");
    for (name, body) in fixtures("crm") {
        let signature = crm_verify::sign(&body, &Secret::new(CRM_SECRET));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&name), &body, |b, body| {
            b.iter(|| crm_ingest(black_box(body), black_box(&signature), &crm, &CRM_NOW))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("activity_fixtures");
    for (name, body) in fixtures("activity") {
        let intake = activity_intake_at(&activity_secrets, &body);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&name), &body, |b, body| {
            b.iter(|| activity_ingest(black_box(body), &intake))
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
