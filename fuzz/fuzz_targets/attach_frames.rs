//! Stream framing between the CLI and the daemon: the attach/exec protocol
//! (`paddock_api::attach::{read_frame, write_frame}`), the server-sent events of
//! `GET /v1/events` and the newline-delimited JSON of `GET /v1/runs/{ref}/logs`
//! (`paddock_api::fuzzing::{take_event, take_log_line}`, what `EventStream` and
//! `LogStream` run on every chunk of the body).
//!
//! Input: one selector byte, then the bytes on the wire.
//!
//! Properties:
//! - nothing panics; a bad frame is an `io::Error`, a bad event or line a JSON error;
//! - every frame read re-encodes to a frame that reads back as itself, and for the kinds
//!   whose payload is kept, to exactly the bytes it was read from;
//! - events and log lines come out the same whatever chunks the body arrives in;
//! - every event (as the daemon frames it, `paddock_api::sse_frame`) and every log line
//!   reads back as itself.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use paddock_api::attach::{Frame, MAX_FRAME, read_frame, write_frame};
use paddock_api::fuzzing::{take_event, take_log_line};
use paddock_api::sse_frame;

/// Runs a future that never waits (reads from a slice, writes into a Vec).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory read or write waited"),
    }
}

fn encode(f: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    now(write_frame(&mut out, f)).expect("writing to a Vec cannot fail");
    out
}

fn frames(data: &[u8]) {
    let mut r = data;
    for _ in 0..64 {
        let before = r.len();
        let f = match now(read_frame(&mut r)) {
            Ok(Some(f)) => f,
            Ok(None) => {
                assert!(before < 5, "clean end with {before} bytes left");
                return;
            }
            Err(_) => return,
        };
        let span = &data[data.len() - before..data.len() - r.len()];
        let len = u32::from_be_bytes([span[1], span[2], span[3], span[4]]) as usize;
        assert!(len <= MAX_FRAME);
        assert_eq!(span.len(), 5 + len);
        let e = encode(&f);
        let mut er = e.as_slice();
        let back = now(read_frame(&mut er))
            .expect("an encoded frame reads")
            .expect("an encoded frame is there");
        assert!(er.is_empty(), "an encoded frame has trailing bytes");
        assert_eq!(back, f, "frame changed through encoding");
        match f {
            // The payload of these is not kept (skipped kinds, end of stdin).
            Frame::Unknown(_) | Frame::CloseStdin => {}
            _ => assert_eq!(e, span, "{f:?} re-encodes differently"),
        }
    }
}

/// What `take` reads off `data` fed in pieces of `piece` bytes.
fn chunked<T>(
    data: &[u8],
    piece: usize,
    take: fn(&mut Vec<u8>) -> Option<Result<T, serde_json::Error>>,
) -> Vec<Result<T, String>> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        while let Some(e) = take(&mut buf) {
            out.push(e.map_err(|e| e.to_string()));
        }
    }
    out
}

fn sse(data: &[u8]) {
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let whole = chunked(body, usize::MAX, take_event);
    let pieces = chunked(body, piece as usize % 13 + 1, take_event);
    assert_eq!(whole, pieces, "events differ with the chunking");
    for ev in whole.into_iter().flatten() {
        // Event kinds are the daemon's own names; one with a line break cannot be framed.
        if ev.kind.contains(['\n', '\r']) {
            continue;
        }
        let mut buf = sse_frame(&ev).into_bytes();
        let back = take_event(&mut buf)
            .expect("a framed event is there")
            .unwrap_or_else(|e| panic!("a framed event does not parse: {e}"));
        assert_eq!(back, ev, "event changed through SSE");
        assert!(buf.is_empty());
    }
}

fn ndjson(data: &[u8]) {
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let whole = chunked(body, usize::MAX, take_log_line);
    let pieces = chunked(body, piece as usize % 13 + 1, take_log_line);
    assert_eq!(whole, pieces, "log lines differ with the chunking");
    for line in whole.into_iter().flatten() {
        let mut buf = serde_json::to_vec(&line).expect("a log line serialises");
        buf.push(b'\n');
        let back = take_log_line(&mut buf)
            .expect("a written line is there")
            .unwrap_or_else(|e| panic!("a written line does not parse: {e}"));
        assert_eq!(back, line, "log line changed through NDJSON");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => frames(rest),
        1 => sse(rest),
        _ => ndjson(rest),
    }
});
