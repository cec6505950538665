//! The control protocol between the runtime (in the daemon) and `paddock init`.
//!
//! Transport: `SOCK_SEQPACKET` Unix sockets, one message per packet, fds attached with
//! SCM_RIGHTS. The first connection is the socketpair the daemon hands to `paddock init` as
//! fd 3; later connections (a restarted daemon, one-shot requests) come through
//! `run_dir/control.sock`, which init binds before `pivot_root`.
//!
//! Message layout: one tag byte, then the payload.
//! - `TAG_JSON`: a JSON [`Up`] or [`Down`] message.
//! - `TAG_OUTPUT` (init → daemon): seq u64 LE, ts_ms i64 LE, stream u8, data.
//! - `TAG_STDIN` (daemon → init): raw bytes for the command's stdin.
//!
//! Output is acknowledged by sequence number ([`Down::Ack`]); init keeps unacknowledged
//! output (bounded) and resends it to the next connection, and the daemon drops sequence
//! numbers it has already logged, so output survives a daemon restart without loss or
//! duplication.
//!
//! Owns: the wire format. Never: does I/O itself.

use serde::{Deserialize, Serialize};

use crate::OutputStream;

pub const TAG_JSON: u8 = 0;
pub const TAG_OUTPUT: u8 = 1;
pub const TAG_STDIN: u8 = 2;

/// Largest output payload init puts in one message.
pub const MAX_OUTPUT_CHUNK: usize = 32 * 1024;
/// Receive buffer size that fits any message.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// init → daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Up {
    /// Stage 1 created the namespaces and PID 1; the netns fd is attached.
    Stage1 { pid: i32 },
    /// An init step began.
    Step {
        index: u32,
        total: u32,
        description: String,
    },
    /// The command was exec'd; `pid` is its pid inside the sandbox.
    Started { pid: i32 },
    /// The command is set up and held before exec (the plan's `hold`) until
    /// [`Down::Release`]; `pid` is its pid inside the sandbox. `Started` or `ExecFailed`
    /// follows the release.
    Held { pid: i32 },
    /// Setup failed before the command could start.
    SetupFailed { step: String, message: String },
    /// The command could not be exec'd (it still "ran": init exits with `code`).
    ExecFailed { code: i32, reason: String },
    /// The command ended; every output message was sent before this one.
    Exited {
        code: i32,
        signal: Option<i32>,
        reason: Option<String>,
    },
    /// Reply to a [`Down::Socket`] / [`Down::NetnsFd`]; the fd is attached on success.
    Fd { id: u64, error: Option<String> },
}

/// daemon → init.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Down {
    /// First message of a reconnecting daemon: make this the primary connection.
    Hello,
    CloseStdin,
    Resize {
        rows: u16,
        cols: u16,
    },
    /// Deliver a signal to the command's process group.
    Signal {
        signal: i32,
    },
    /// All output up to and including `seq` is durably logged.
    Ack {
        seq: u64,
    },
    /// The exit status is durably recorded (`exit.json`); init may leave.
    ExitAck,
    /// Let a held command exec (its network is ready).
    Release,
    /// Create a socket in the sandbox's network namespace and send it back.
    Socket {
        id: u64,
        domain: i32,
        ty: i32,
    },
    /// Send back an fd of the sandbox's network namespace.
    NetnsFd {
        id: u64,
    },
    /// Start another command in the sandbox (confined like the first). Sent as the first
    /// message of a new connection, which then carries that command's output (`TAG_OUTPUT`,
    /// unacknowledged), its input, and its `Exited`.
    Exec {
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
        tty_size: Option<crate::TtySize>,
    },
}

pub fn encode_json<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![TAG_JSON];
    // Serialising these enums cannot fail (no maps with non-string keys, no foreign types).
    serde_json::to_writer(&mut out, msg).unwrap_or_default();
    out
}

pub fn stream_byte(s: OutputStream) -> u8 {
    match s {
        OutputStream::Stdout => 1,
        OutputStream::Stderr => 2,
        OutputStream::Tty => 3,
    }
}

pub fn byte_stream(b: u8) -> Option<OutputStream> {
    match b {
        1 => Some(OutputStream::Stdout),
        2 => Some(OutputStream::Stderr),
        3 => Some(OutputStream::Tty),
        _ => None,
    }
}

pub fn encode_output(seq: u64, ts_ms: i64, stream: OutputStream, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + data.len());
    out.push(TAG_OUTPUT);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts_ms.to_le_bytes());
    out.push(stream_byte(stream));
    out.extend_from_slice(data);
    out
}

/// A decoded output message.
pub struct OutputMsg<'a> {
    pub seq: u64,
    pub ts_ms: i64,
    pub stream: OutputStream,
    pub data: &'a [u8],
}

pub fn decode_output(payload: &[u8]) -> Option<OutputMsg<'_>> {
    if payload.len() < 17 {
        return None;
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let ts_ms = i64::from_le_bytes(payload[8..16].try_into().ok()?);
    let stream = byte_stream(payload[16])?;
    Some(OutputMsg {
        seq,
        ts_ms,
        stream,
        data: &payload[17..],
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
