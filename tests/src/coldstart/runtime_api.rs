//! A stand-in for the Lambda Runtime API on 127.0.0.1: the four endpoints a custom runtime calls.
//! Every call is timestamped when the server has read it and handed to the driver over a channel;
//! `GET .../invocation/next` is held open until the driver answers it with an invocation, as the
//! real service does.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const PREFIX: &str = "/2018-06-01/runtime";

/// One event for the function, as `GET .../invocation/next` hands it out.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    pub deadline_ms: u64,
    pub function_arn: String,
    pub event: Bytes,
}

/// A call the function made, with the instant the server had read it.
#[derive(Debug)]
pub enum Call {
    /// The runtime is ready for an event; the request stays open until `reply` is used (or dropped).
    Next {
        at: Instant,
        reply: oneshot::Sender<Invocation>,
    },
    Response {
        at: Instant,
        request_id: String,
        body: Bytes,
    },
    Error {
        at: Instant,
        request_id: String,
        body: Bytes,
    },
    InitError {
        at: Instant,
        body: Bytes,
    },
}

/// The server: a listening socket and the calls received so far.
pub struct RuntimeApi {
    address: SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
    acceptor: JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn bind(address: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (sender, calls) = mpsc::unbounded_channel();
        let acceptor = tokio::spawn(accept_loop(listener, sender));
        Ok(Self {
            address,
            calls,
            acceptor,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The next call, in arrival order.
    pub async fn next_call(&mut self) -> Option<Call> {
        self.calls.recv().await
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(listener: TcpListener, calls: mpsc::UnboundedSender<Call>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // The runtime client writes small requests; Nagle would hold them back by up to 40 ms.
        let _ = stream.set_nodelay(true);
        let calls = calls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| route(request, calls.clone()));
            // A connection ends when the function process is stopped; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

async fn route(request: Request<Incoming>, calls: mpsc::UnboundedSender<Call>) -> Result<Answer, hyper::Error> {
    let at = Instant::now();
    let path = request.uri().path().strip_prefix(PREFIX).unwrap_or("").to_owned();
    let method = request.method().clone();
    if method == Method::GET && path == "/invocation/next" {
        let (reply, invocation) = oneshot::channel();
        if calls.send(Call::Next { at, reply }).is_err() {
            return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
        }
        return Ok(match invocation.await {
            Ok(invocation) => next_answer(invocation),
            // The driver is done with this process: it will not get another event.
            Err(_) => status(StatusCode::GONE),
        });
    }
    if method != Method::POST {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    let body = request.into_body().collect().await?.to_bytes();
    let call = if path == "/init/error" {
        Call::InitError { at, body }
    } else {
        let Some((request_id, outcome)) = path.strip_prefix("/invocation/").and_then(|rest| rest.split_once('/'))
        else {
            return Ok(status(StatusCode::NOT_FOUND));
        };
        let request_id = request_id.to_owned();
        match outcome {
            "response" => Call::Response { at, request_id, body },
            "error" => Call::Error { at, request_id, body },
            _ => return Ok(status(StatusCode::NOT_FOUND)),
        }
    };
    Ok(match calls.send(call) {
        Ok(()) => status(StatusCode::ACCEPTED),
        Err(_) => status(StatusCode::SERVICE_UNAVAILABLE),
    })
}

fn status(code: StatusCode) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = code;
    answer
}

fn next_answer(invocation: Invocation) -> Answer {
    let mut answer = Response::new(Full::new(invocation.event));
    let headers = answer.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let pairs = [
        ("lambda-runtime-aws-request-id", invocation.request_id),
        ("lambda-runtime-deadline-ms", invocation.deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", invocation.function_arn),
        (
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".to_owned(),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
    answer
}
