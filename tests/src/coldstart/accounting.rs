//! The call and capacity-unit counts of the bench's local DynamoDB (`scripts/dynamodb_local.py
//! --accounting`): `POST /_bench/reset` zeroes them, `GET /_bench/calls` reads them. Every
//! DynamoDB request that reaches the server is counted there, SDK retries included, whoever sent it.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The counting local DynamoDB at one endpoint (`http://127.0.0.1:PORT`).
pub struct Accounting {
    address: String,
}

/// What the server counted since the last reset.
#[derive(Debug, Clone)]
pub struct Counted(pub Value);

impl Accounting {
    pub fn new(endpoint: &str) -> Self {
        Self {
            address: endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned(),
        }
    }

    pub async fn reset(&self) -> Result<(), std::io::Error> {
        self.request("POST", "/_bench/reset").await.map(drop)
    }

    pub async fn counted(&self) -> Result<Counted, std::io::Error> {
        self.request("GET", "/_bench/calls").await.map(Counted)
    }

    async fn request(&self, method: &str, path: &str) -> Result<Value, std::io::Error> {
        let mut stream = tokio::net::TcpStream::connect(&self.address).await?;
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            self.address
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let text = String::from_utf8_lossy(&answer);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).map_err(std::io::Error::other)
    }
}

impl Counted {
    fn total(&self, key: &str) -> f64 {
        self.0[key].as_object().map_or(0.0, |per| {
            per.values().filter_map(Value::as_f64).fold(0.0, |sum, v| sum + v)
        })
    }

    /// DynamoDB calls, of every operation.
    pub fn calls(&self) -> f64 {
        self.total("calls")
    }

    pub fn read_units(&self) -> f64 {
        self.total("read_units")
    }

    pub fn write_units(&self) -> f64 {
        self.total("write_units")
    }

    pub fn condition_failures(&self) -> f64 {
        self.0["condition_failures"].as_f64().unwrap_or(0.0)
    }

    /// Size of the item last put into `table` (PutItem or a transaction's Put), by DynamoDB's rules.
    pub fn last_put_bytes(&self, table: &str) -> Option<f64> {
        self.0["last_put_bytes"][table].as_f64()
    }
}
