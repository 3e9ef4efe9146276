//! The `activity-callback` Lambda function: configuration, secrets and the DynamoDB client are
//! set up once, before the run loop.

mod handler;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::init_tracing();
    let app = handler::App::from_env(&shared::config::Env::from_process())?;
    shared::http::serve(app).await
}

#[cfg(test)]
mod tests;
