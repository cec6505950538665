//! The attach protocol: what flows over `GET /v1/runs/{ref}/attach` and
//! `POST /v1/runs/{ref}/exec` after the HTTP upgrade (`Upgrade: paddock-attach`).
//!
//! Frames are `[kind: u8][len: u32 big-endian][payload]`, at most [`MAX_FRAME`] bytes of
//! payload. Daemon → client: output, init steps, exit. Client → daemon: stdin, resize,
//! signals. Unknown kinds are skipped by both sides (additive evolution).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The `Upgrade:` protocol token.
pub const UPGRADE_PROTOCOL: &str = "paddock-attach";

/// Largest payload of one frame.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame of the attach protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Daemon → client: bytes the command wrote to stdout.
    Stdout(Vec<u8>),
    /// Daemon → client: bytes the command wrote to stderr.
    Stderr(Vec<u8>),
    /// Daemon → client: a progress line (JSON of [`crate::InitStep`]).
    InitStep(Vec<u8>),
    /// Daemon → client: the run ended (JSON of [`crate::WaitResult`]; for an exec session,
    /// of [`crate::ExecResult`]). Last frame.
    Exit(Vec<u8>),
    /// Daemon → client: the run the session belongs to (JSON of [`crate::Run`]). The first
    /// frame of a create-and-attach session (`POST /v1/runs` with the upgrade), which has
    /// no JSON answer of its own.
    Run(Vec<u8>),
    /// Client → daemon: bytes for the command's stdin.
    Stdin(Vec<u8>),
    /// Client → daemon: stdin reached end of file.
    CloseStdin,
    /// Client → daemon: the terminal was resized.
    Resize { rows: u16, cols: u16 },
    /// Client → daemon: deliver this signal to the command's process group.
    Signal(i32),
    /// A frame kind this side does not know (skipped).
    Unknown(u8),
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdout(_) => 1,
            Frame::Stderr(_) => 2,
            Frame::InitStep(_) => 3,
            Frame::Exit(_) => 4,
            Frame::Run(_) => 5,
            Frame::Stdin(_) => 10,
            Frame::CloseStdin => 11,
            Frame::Resize { .. } => 12,
            Frame::Signal(_) => 13,
            Frame::Unknown(k) => *k,
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Frame::Stdout(b)
            | Frame::Stderr(b)
            | Frame::InitStep(b)
            | Frame::Exit(b)
            | Frame::Run(b)
            | Frame::Stdin(b) => b.clone(),
            Frame::CloseStdin | Frame::Unknown(_) => Vec::new(),
            Frame::Resize { rows, cols } => {
                let mut v = rows.to_be_bytes().to_vec();
                v.extend_from_slice(&cols.to_be_bytes());
                v
            }
            Frame::Signal(s) => s.to_be_bytes().to_vec(),
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> std::io::Result<Frame> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed attach frame");
        Ok(match kind {
            1 => Frame::Stdout(payload),
            2 => Frame::Stderr(payload),
            3 => Frame::InitStep(payload),
            4 => Frame::Exit(payload),
            5 => Frame::Run(payload),
            10 => Frame::Stdin(payload),
            11 => Frame::CloseStdin,
            12 => {
                let b: [u8; 4] = payload.as_slice().try_into().map_err(|_| bad())?;
                Frame::Resize {
                    rows: u16::from_be_bytes([b[0], b[1]]),
                    cols: u16::from_be_bytes([b[2], b[3]]),
                }
            }
            13 => {
                let b: [u8; 4] = payload.as_slice().try_into().map_err(|_| bad())?;
                Frame::Signal(i32::from_be_bytes(b))
            }
            k => Frame::Unknown(k),
        })
    }
}

/// Write one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> std::io::Result<()> {
    let payload = frame.payload();
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(frame.kind());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&payload);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Read one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Frame::decode(head[0], payload).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = vec![
            Frame::Stdout(b"hello".to_vec()),
            Frame::Stderr(vec![0, 255]),
            Frame::Resize {
                rows: 40,
                cols: 120,
            },
            Frame::Signal(2),
            Frame::CloseStdin,
            Frame::Exit(b"{}".to_vec()),
        ];
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).await.unwrap();
        }
        let mut r = buf.as_slice();
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut r).await.unwrap() {
            got.push(f);
        }
        assert_eq!(got, frames);
    }

    #[tokio::test]
    async fn oversized_frame_is_refused() {
        let mut buf = vec![1u8];
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut r = buf.as_slice();
        assert!(read_frame(&mut r).await.is_err());
    }
}
