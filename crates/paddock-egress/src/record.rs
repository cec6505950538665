//! Network log records: one per HTTP request, tunnel, passthrough connection or DNS query.
//!
//! Records carry grant *names*, never credential values. The daemon passes a sink that
//! forwards them to the event bus and the run's log; the sink must not block.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::policy::Decision;

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// One HTTP request (plain or intercepted TLS).
    Http,
    /// A TLS connection passed through by SNI only (no interception).
    Passthrough,
    /// A connection refused before any request was seen (no SNI/Host, fronting, not
    /// interceptable, denied at connection level).
    Connection,
    /// One DNS query to the stub.
    Dns,
}

/// One network log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetRecord {
    /// The run (filled in by the run's [`Recorder`]).
    pub run_id: String,
    /// Start, milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub kind: RecordKind,
    /// HTTP method; the query type for DNS.
    pub method: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// HTTP status; the rcode for DNS.
    pub status: Option<u16>,
    /// Bytes from the sandbox (request body, or everything up for a tunnel).
    pub bytes_up: u64,
    /// Bytes to the sandbox.
    pub bytes_down: u64,
    pub duration_us: u64,
    pub decision: Decision,
    /// Names of the grants whose credentials were injected.
    pub grants: Vec<String>,
    /// Extra detail: the synthetic address of a DNS answer, the error of a failed request.
    pub detail: Option<String>,
    #[serde(skip)]
    started: Option<Instant>,
}

impl NetRecord {
    pub fn new(kind: RecordKind, host: impl Into<String>, decision: Decision) -> Self {
        NetRecord {
            run_id: String::new(),
            time_ms: now_ms(),
            kind,
            method: None,
            host: host.into(),
            port: None,
            path: None,
            status: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_us: 0,
            decision,
            grants: vec![],
            detail: None,
            started: Some(Instant::now()),
        }
    }

    /// Set the duration from `t0`.
    pub fn finish(&mut self, t0: Instant) {
        self.duration_us = t0.elapsed().as_micros() as u64;
    }

    /// Set the duration from when the record was created.
    pub fn finish_now(&mut self) {
        if let Some(t) = self.started {
            self.duration_us = t.elapsed().as_micros() as u64;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where records go. Must not block.
pub type RecordSink = Arc<dyn Fn(NetRecord) + Send + Sync>;

/// A run's record emitter: stamps the run id and calls the sink.
#[derive(Clone)]
pub struct Recorder {
    run_id: Arc<str>,
    sink: RecordSink,
}

impl Recorder {
    pub fn new(run_id: &str, sink: RecordSink) -> Self {
        Recorder {
            run_id: run_id.into(),
            sink,
        }
    }

    pub fn emit(&self, mut r: NetRecord) {
        r.run_id = self.run_id.to_string();
        (self.sink)(r);
    }
}
