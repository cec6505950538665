//! The run's durable output log, `run_dir/log.jsonl`, and `exit.json`.
//!
//! One JSON object per line:
//! `{"ts_ms":1700000000000,"stream":"stdout","seq":7,"data":"hello\n"}`.
//! `stream` is `stdout`, `stderr` or `tty`. `data` is a JSON string when the chunk is valid
//! UTF-8 (readable with `jq`), otherwise `{"b64":"<standard base64 with padding>"}`, so the
//! log is lossless for binary output. A chunk is what one read from the command's pipe/pty
//! returned, so a multi-byte character split across two reads makes both chunks base64.
//! `seq` increases by one per chunk and lets a restarted daemon skip output it already
//! logged.
//!
//! Owns: the encoding of both files. Never: decides when to write (the run actor does).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ExitInfo, OutputChunk, OutputStream};

fn stream_name(s: OutputStream) -> &'static str {
    match s {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
        OutputStream::Tty => "tty",
    }
}

/// One line (with the trailing newline).
pub fn encode_line(seq: u64, chunk: &OutputChunk) -> Vec<u8> {
    let data = match std::str::from_utf8(&chunk.data) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => serde_json::json!({ "b64": b64_encode(&chunk.data) }),
    };
    let v = serde_json::json!({
        "ts_ms": chunk.ts_ms,
        "stream": stream_name(chunk.stream),
        "seq": seq,
        "data": data,
    });
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Parse one line; `None` for a torn or foreign line.
pub fn decode_line(line: &[u8]) -> Option<(u64, OutputChunk)> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let stream = match v.get("stream")?.as_str()? {
        "stdout" => OutputStream::Stdout,
        "stderr" => OutputStream::Stderr,
        "tty" => OutputStream::Tty,
        _ => return None,
    };
    let data = match v.get("data")? {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Object(o) => b64_decode(o.get("b64")?.as_str()?)?,
        _ => return None,
    };
    let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
    Some((
        seq,
        OutputChunk {
            ts_ms: v.get("ts_ms")?.as_i64()?,
            stream,
            data,
        },
    ))
}

/// The highest `seq` in a log (reads only the tail of the file).
pub fn last_seq(path: &std::path::Path) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return 0;
    }
    buf.split(|b| *b == b'\n')
        .filter_map(decode_line)
        .map(|(s, _)| s)
        .max()
        .unwrap_or(0)
}

/// A run's output for `logs`: the log's first `upto` bytes (its last `tail` lines when
/// given), then every chunk of `live` (a subscription that began at byte `upto`), so
/// nothing is repeated or missed. Both runtimes' `logs` are this.
pub fn replay(
    path: std::path::PathBuf,
    upto: u64,
    tail: Option<usize>,
    live: Option<tokio::sync::mpsc::Receiver<OutputChunk>>,
) -> tokio::sync::mpsc::Receiver<OutputChunk> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let data = tokio::fs::read(&path).await.unwrap_or_default();
        let end = upto.min(data.len() as u64) as usize;
        let mut chunks: Vec<OutputChunk> = data[..end]
            .split(|b| *b == b'\n')
            .filter_map(decode_line)
            .map(|(_, c)| c)
            .collect();
        if let Some(n) = tail {
            chunks = tail_lines(chunks, n);
        }
        for c in chunks {
            if tx.send(c).await.is_err() {
                return;
            }
        }
        if let Some(mut live) = live {
            while let Some(c) = live.recv().await {
                if tx.send(c).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// `exit.json`: how the command ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    pub reason: Option<String>,
    pub ts_ms: i64,
    /// Who wrote it: "runtime" or "init".
    pub writer: String,
}

impl ExitRecord {
    pub fn info(&self) -> ExitInfo {
        ExitInfo {
            exit_code: self.exit_code,
            signal: self.signal,
            oom_killed: self.oom_killed,
            reason: self.reason.clone(),
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes() {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_roundtrip() {
        for n in 0..20 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 200) as u8).collect();
            assert_eq!(b64_decode(&b64_encode(&data)).unwrap(), data);
        }
        assert_eq!(b64_encode(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn line_roundtrip() {
        for data in [b"hello\n".to_vec(), vec![0xff, 0, 1, 0xc3]] {
            let c = OutputChunk {
                ts_ms: 5,
                stream: OutputStream::Stderr,
                data,
            };
            let line = encode_line(9, &c);
            let (seq, back) = decode_line(line.trim_ascii_end()).unwrap();
            assert_eq!((seq, back), (9, c));
        }
    }
}

/// The chunks holding the last `n` lines of output (across streams, as they were
/// interleaved), cutting the first kept chunk at a line boundary. A final line without a
/// newline counts as a line.
pub fn tail_lines(mut chunks: Vec<OutputChunk>, n: usize) -> Vec<OutputChunk> {
    if n == 0 {
        return Vec::new();
    }
    // Walk back from the end; the very last byte being '\n' ends the last line, it does not
    // start a new one.
    let mut newlines = 0usize;
    let mut trailing = true;
    for i in (0..chunks.len()).rev() {
        let data = &chunks[i].data;
        for j in (0..data.len()).rev() {
            if data[j] == b'\n' {
                if trailing {
                    trailing = false;
                    continue;
                }
                newlines += 1;
                if newlines == n {
                    let rest = chunks[i].data.split_off(j + 1);
                    chunks[i].data = rest;
                    let mut kept = chunks.split_off(i);
                    if kept[0].data.is_empty() {
                        kept.remove(0);
                    }
                    return kept;
                }
            } else {
                trailing = false;
            }
        }
    }
    chunks
}

#[cfg(test)]
mod tail_tests {
    use super::*;
    use crate::OutputStream;

    fn chunk(s: &str) -> OutputChunk {
        OutputChunk {
            ts_ms: 0,
            stream: OutputStream::Stdout,
            data: s.as_bytes().to_vec(),
        }
    }

    fn text(v: &[OutputChunk]) -> String {
        v.iter()
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect()
    }

    #[test]
    fn tail_counts_lines_not_chunks() {
        let chunks = vec![chunk("a\nb\n"), chunk("c\nd"), chunk("\ne\n")];
        assert_eq!(text(&tail_lines(chunks.clone(), 1)), "e\n");
        assert_eq!(text(&tail_lines(chunks.clone(), 2)), "d\ne\n");
        assert_eq!(text(&tail_lines(chunks.clone(), 4)), "b\nc\nd\ne\n");
        assert_eq!(text(&tail_lines(chunks.clone(), 10)), "a\nb\nc\nd\ne\n");
        assert_eq!(text(&tail_lines(chunks, 0)), "");
        assert_eq!(text(&tail_lines(vec![chunk("x\ny")], 1)), "y");
    }
}
