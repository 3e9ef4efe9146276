//! The `activity-callback` Lambda function: configuration, secrets and the DynamoDB client are
//! set up once, before the run loop.

use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};
use webhook_model::clock::SystemClock;
use webhook_model::config::{ActivityConfig, Env};
use webhook_model::dynamo::{client_from_env, DynamoActivityStore};

mod handler;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    webhook_model::http::init_tracing();
    let env = Env::from_process();
    let config = ActivityConfig::from_env(&env).map_err(|error| {
        tracing::error!(%error, "configuration is incomplete; not starting");
        error
    })?;
    if config.secrets.is_empty() {
        tracing::warn!("no ACTIVITY_CALLBACK_SECRET configured: every request will be refused (401 no_secret)");
    }
    let store = DynamoActivityStore::new(
        client_from_env(&env),
        config.table_name.clone(),
        config.nonces_table_name.clone(),
        config.nonce_retention_seconds(),
        Arc::new(SystemClock),
    );
    let app = Arc::new(handler::App {
        config,
        store,
        clock: Box::new(SystemClock),
    });
    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(app.handle(request).await) }
    }))
    .await
}

#[cfg(test)]
mod tests;
