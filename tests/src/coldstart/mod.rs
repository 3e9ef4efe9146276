//! Cold start, first and warm invocation latency, and peak memory of a function's release
//! `bootstrap`, measured the way the Lambda service would see them: the process is started with a
//! Lambda environment against a local stand-in for the Runtime API, and every figure is taken
//! from the instants at which that server read the function's calls.

pub mod accounting;
pub mod cleanup;
pub mod environment;
pub mod events;
pub mod process;
pub mod runtime_api;
pub mod scenarios;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
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

/// One running function process, waiting for its next event.
pub struct Instance {
    process: FunctionProcess,
    reply: oneshot::Sender<Invocation>,
    function: Function,
    /// From just before exec to the first `GET .../invocation/next`.
    pub init: Duration,
    /// CPU time the process used until then.
    pub init_cpu: Duration,
}

/// One event handed to an [`Instance`] and answered.
pub struct Answered {
    /// From handing the event out to the response being posted.
    pub latency: Duration,
    /// CPU time the whole process used for it (until it asked for the next event).
    pub cpu: Duration,
    /// The API Gateway response the function posted.
    pub posted: Vec<u8>,
}

impl Instance {
    /// Starts the process and waits until it asks for its first event.
    pub async fn start(api: &mut RuntimeApi, launch: &Launch) -> Result<Self, HarnessError> {
        let (mut process, started) = FunctionProcess::spawn(&launch.bootstrap, &launch.environment, &launch.log)?;
        let (ready_at, reply) = wait_next(api, &mut process).await?;
        let init_cpu = process.cpu_time()?;
        Ok(Self {
            process,
            reply,
            function: launch.function,
            init: ready_at - started,
            init_cpu,
        })
    }

    /// Hands out `event` and waits for its response, then for the next `GET .../next`.
    pub async fn invoke(&mut self, api: &mut RuntimeApi, event: Bytes) -> Result<Answered, HarnessError> {
        let cpu_before = self.process.cpu_time()?;
        let request_id = unique_nonce();
        let invocation = Invocation {
            request_id: request_id.clone(),
            deadline_ms: epoch_ms() + CALL_TIMEOUT.as_millis() as u64,
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                self.function.name()
            ),
            event,
        };
        let handed_out = Instant::now();
        let (reply, _) = oneshot::channel();
        std::mem::replace(&mut self.reply, reply)
            .send(invocation)
            .map_err(|_| HarnessError::Protocol("the runtime dropped its GET .../next".to_owned()))?;
        let (answered_at, posted) = wait_response(api, &mut self.process, &request_id).await?;
        (_, self.reply) = wait_next(api, &mut self.process).await?;
        Ok(Answered {
            latency: answered_at - handed_out,
            cpu: self.process.cpu_time()?.saturating_sub(cpu_before),
            posted,
        })
    }

    /// `VmHWM` so far, in KiB.
    pub fn peak_rss_kib(&self) -> std::io::Result<u64> {
        self.process.peak_rss_kib()
    }
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
    let mut instance = Instance::start(api, launch).await?;
    let mut answers = Vec::with_capacity(invocations);
    for _ in 0..invocations.max(1) {
        let answered = instance.invoke(api, events.next_event()?).await?;
        if !events.is_success(&answered.posted) {
            return Err(HarnessError::Unsuccessful(
                String::from_utf8_lossy(&answered.posted).into_owned(),
            ));
        }
        answers.push(answered);
        cleaner.clear().await?;
    }
    // Read while the process waits for its next event, i.e. after all the work it was given.
    let peak_rss_kib = instance.peak_rss_kib()?;
    Ok(ProcessRun {
        init: instance.init,
        init_cpu: instance.init_cpu,
        first: answers[0].latency,
        first_cpu: answers[0].cpu,
        warm: answers[1..].iter().map(|a| a.latency).collect(),
        warm_cpu: answers[1..].iter().map(|a| a.cpu).collect(),
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
