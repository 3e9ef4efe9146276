//! Runs the pure CRM ingest path of the criterion bench (`benches/ingest.rs`) a given number of
//! times on one body, for instruction and allocation counts under valgrind, where criterion's
//! own machinery would swamp the figures:
//!
//!     cargo build --release -p shared --example ingest_repeat
//!     valgrind --tool=callgrind target/release/examples/ingest_repeat fixtures/crm/seed_124_object_create.json 1001
//!
//! Run it with 1 and with 1,001 repetitions: the difference divided by 1,000 is the cost of one
//! delivery, without start-up.

use std::hint::black_box;

use shared::crm::{verify, CrmIntake, CrmState};
use shared::merge::Mergeable;
use shared::secret::{Secret, TenantSecrets};
use shared::timefmt::{utc_rfc3339, SourceOffset};

const SECRET: &str = "bench-crm-secret";

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(times)) = (args.next(), args.next()) else {
        eprintln!("usage: ingest_repeat BODY_FILE TIMES");
        std::process::exit(2);
    };
    let body = std::fs::read(&path).expect("the body file can be read");
    let times: u32 = times.parse().expect("TIMES is a number");
    let intake = CrmIntake {
        signature_header: "X-Signature".to_owned(),
        scheme: Default::default(),
        secrets: TenantSecrets::from_vars("CRM_WEBHOOK_SECRET", [("CRM_WEBHOOK_SECRET", SECRET)]),
        offset: SourceOffset::BEIJING,
    };
    let signature = verify::sign(&body, &Secret::new(SECRET));
    for _ in 0..times {
        let event = intake
            .verified_event(black_box(&body), Some(black_box(&signature)))
            .expect("signed and normalizes");
        black_box(CrmState::merge(None, &event).to_item(&utc_rfc3339(1_767_225_600)));
    }
}
