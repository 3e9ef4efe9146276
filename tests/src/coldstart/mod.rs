//! Cold start, first and warm invocation latency, and peak memory of a function's release
//! `bootstrap`, measured the way the Lambda service would see them: the process is started with a
//! Lambda environment against a local stand-in for the Runtime API, and every figure is taken
//! from the instants at which that server read the function's calls.

pub mod cleanup;
pub mod environment;
pub mod events;
pub mod process;
pub mod runtime_api;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::oneshot;

use self::cleanup::TenantCleaner;
use self::environment::Function;
use self::events::EventSource;
use self::process::FunctionProcess;
use self::runtime_api::{Call, Invocation, RuntimeApi};
use crate::signing::unique_nonce;

/// How long a function may take to get ready, or to answer one event (its configured timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a silent function is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("event: {0}")]
    Event(#[from] serde_json::Error),
    #[error("the function exited ({0}) before calling the Runtime API")]
    Exited(ExitStatus),
    #[error("the function did not call the Runtime API within {0:?}")]
    Timeout(Duration),
    #[error("the function reported an init error: {0}")]
    InitError(String),
    #[error("the function reported an invocation error: {0}")]
    InvocationError(String),
    #[error("the function answered, but not with the expected success: {0}")]
    Unsuccessful(String),
    #[error("cleaning up the local tables: {0}")]
    Cleanup(#[from] aws_sdk_dynamodb::Error),
    #[error("unexpected call to the Runtime API: {0}")]
    Protocol(String),
}

/// What to start, and with what.
pub struct Launch {
    pub function: Function,
    pub bootstrap: PathBuf,
    pub environment: Vec<(String, String)>,
    pub log: PathBuf,
}

/// The figures of one function process.
#[derive(Debug, Clone)]
pub struct ProcessRun {
    /// From just before exec to the first `GET .../invocation/next`.
    pub init: Duration,
    /// CPU time the process used until then.
    pub init_cpu: Duration,
    /// From handing out the first event to its response being posted.
    pub first: Duration,
    /// CPU time the process used for the first event (until it asked for the next).
    pub first_cpu: Duration,
    /// The same for every later event.
    pub warm: Vec<Duration>,
    /// CPU time the whole process used for each later event (until it asked for the next).
    pub warm_cpu: Vec<Duration>,
    /// `VmHWM` after the last invocation, in KiB.
    pub peak_rss_kib: u64,
}

/// Starts one process, gives it `invocations` events (at least one) one after the other, and
/// stops it once it asks for the next. The tenant's items are deleted after each event.
pub async fn run_process(
    api: &mut RuntimeApi,
    launch: &Launch,
    events: &mut EventSource,
    cleaner: &TenantCleaner,
    invocations: usize,
) -> Result<ProcessRun, HarnessError> {
    let (mut process, started) = FunctionProcess::spawn(&launch.bootstrap, &launch.environment, &launch.log)?;
    let (ready_at, mut reply) = wait_next(api, &mut process).await?;
    let init = ready_at - started;
    let init_cpu = process.cpu_time()?;
    let mut first_cpu = Duration::ZERO;
    let mut warm_cpu = Vec::with_capacity(invocations);
    let mut cpu_before = init_cpu;
    let mut latencies = Vec::with_capacity(invocations);
    for _ in 0..invocations.max(1) {
        let request_id = unique_nonce();
        let invocation = Invocation {
            request_id: request_id.clone(),
            deadline_ms: epoch_ms() + CALL_TIMEOUT.as_millis() as u64,
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                launch.function.name()
            ),
            event: events.next_event()?,
        };
        let handed_out = Instant::now();
        reply
            .send(invocation)
            .map_err(|_| HarnessError::Protocol("the runtime dropped its GET .../next".to_owned()))?;
        let (answered_at, posted) = wait_response(api, &mut process, &request_id).await?;
        latencies.push(answered_at - handed_out);
        if !events.is_success(&posted) {
            return Err(HarnessError::Unsuccessful(
                String::from_utf8_lossy(&posted).into_owned(),
            ));
        }
        (_, reply) = wait_next(api, &mut process).await?;
        let cpu_now = process.cpu_time()?;
        if latencies.len() == 1 {
            first_cpu = cpu_now - init_cpu;
        } else {
            warm_cpu.push(cpu_now.saturating_sub(cpu_before));
        }
        cpu_before = cpu_now;
        cleaner.clear().await?;
    }
    // Read while the process waits for its next event, i.e. after all the work it was given.
    let peak_rss_kib = process.peak_rss_kib()?;
    drop(process);
    drop(reply);
    Ok(ProcessRun {
        init,
        init_cpu,
        first: latencies[0],
        first_cpu,
        warm: latencies[1..].to_vec(),
        warm_cpu,
        peak_rss_kib,
    })
}

async fn wait_call(api: &mut RuntimeApi, process: &mut FunctionProcess) -> Result<Call, HarnessError> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        tokio::select! {
            call = api.next_call() => {
                return call.ok_or_else(|| HarnessError::Protocol("the Runtime API server stopped".to_owned()));
            }
            () = tokio::time::sleep(EXIT_POLL) => {
                if let Some(status) = process.exited()? {
                    return Err(HarnessError::Exited(status));
                }
                if Instant::now() >= deadline {
                    return Err(HarnessError::Timeout(CALL_TIMEOUT));
                }
            }
        }
    }
}

async fn wait_next(
    api: &mut RuntimeApi,
    process: &mut FunctionProcess,
) -> Result<(Instant, oneshot::Sender<Invocation>), HarnessError> {
    match wait_call(api, process).await? {
        Call::Next { at, reply } => Ok((at, reply)),
        Call::InitError { body, .. } => Err(HarnessError::InitError(text(&body))),
        Call::Error { body, .. } => Err(HarnessError::InvocationError(text(&body))),
        Call::Response { request_id, .. } => Err(HarnessError::Protocol(format!("a response for {request_id}"))),
    }
}

async fn wait_response(
    api: &mut RuntimeApi,
    process: &mut FunctionProcess,
    expected: &str,
) -> Result<(Instant, Vec<u8>), HarnessError> {
    match wait_call(api, process).await? {
        Call::Response { at, request_id, body } if request_id == expected => Ok((at, body.to_vec())),
        Call::Error { body, .. } => Err(HarnessError::InvocationError(text(&body))),
        Call::InitError { body, .. } => Err(HarnessError::InitError(text(&body))),
        Call::Response { request_id, .. } => Err(HarnessError::Protocol(format!("a response for {request_id}"))),
        Call::Next { .. } => Err(HarnessError::Protocol("GET .../next before a response".to_owned())),
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
