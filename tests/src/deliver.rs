//! Delivering generated events to the functions over HTTP, from several clients at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::history::{Event, Source};
use crate::http::{activity_url, dev_crm_secret, post, post_crm, Answer};

/// One delivery and what the function answered.
#[derive(Debug, Clone)]
pub struct Sent {
    pub event: Event,
    pub answer: Answer,
    pub elapsed: Duration,
}

/// Posts `event` as its sender would (CRM bodies signed with the dev secret).
pub async fn send(client: &reqwest::Client, mid: &str, event: &Event) -> Answer {
    match event.source {
        Source::Crm => post_crm(client, &event.body, dev_crm_secret()).await,
        Source::Activity => post(client, &activity_url(mid), &[], event.body.clone()).await,
    }
}

/// Sends every delivery, `clients` at a time, each client taking the next one as soon as it has
/// its answer. The result is in the order of `deliveries`.
pub async fn send_concurrently(mid: &str, deliveries: Vec<Event>, clients: usize) -> Vec<Sent> {
    let total = deliveries.len();
    let queue = Arc::new(Mutex::new(deliveries.into_iter().enumerate()));
    let mut workers = JoinSet::new();
    for _ in 0..clients {
        let queue = Arc::clone(&queue);
        let mid = mid.to_owned();
        workers.spawn(async move {
            let client = crate::http::client();
            let mut sent = Vec::new();
            loop {
                let next = queue.lock().expect("no client panicked holding the queue").next();
                let Some((index, event)) = next else { return sent };
                let started = Instant::now();
                let answer = send(&client, &mid, &event).await;
                let elapsed = started.elapsed();
                sent.push((index, Sent { event, answer, elapsed }));
            }
        });
    }
    let mut all: Vec<Option<Sent>> = vec![None; total];
    while let Some(done) = workers.join_next().await {
        for (index, sent) in done.expect("a client task completes") {
            all[index] = Some(sent);
        }
    }
    all.into_iter()
        .map(|sent| sent.expect("every delivery was sent"))
        .collect()
}
