//! The chunked transfer coding (RFC 9112 §7.1), decoded and re-encoded as it streams.
//!
//! Owns: chunk-size lines (httparse's `parse_chunk_size`, plus the checks it leaves out),
//! chunk data boundaries, and the trailer section (read and dropped: trailers are not
//! forwarded). Every buffered piece is bounded. Never does I/O: the pump feeds it bytes.
//!
//! The output is re-encoded (`size` in hex, CRLF, data, CRLF), never the peer's raw
//! framing: chunk extensions and odd spacing do not reach the other side.

use httparse::Status;

/// Longest chunk-size line accepted (size, extensions, CRLF).
const MAX_SIZE_LINE: usize = 4096;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    #[error("invalid chunk size line")]
    Size,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("invalid trailer section")]
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
}

/// Checks httparse leaves to the caller: the size has at least one digit, and the line
/// holds no control characters (a bare LF in an extension is a known smuggling vector).
fn size_line_ok(line: &[u8]) -> bool {
    let body = &line[..line.len() - 2];
    body.first().is_some_and(u8::is_ascii_hexdigit)
        && body
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
}

fn put_size(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

impl Decoder {
    pub(crate) fn new() -> Decoder {
        Decoder { state: State::Size }
    }

    /// The terminating chunk and trailer section have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode as much of `input` as possible, appending the re-encoded body to `out`.
    /// Returns how many bytes of `input` were used; the rest (an incomplete line, or what
    /// follows the body) is for the caller to keep.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(Status::Complete((n, size))) => {
                        if !size_line_ok(&rest[..n]) {
                            return Err(ChunkError::Size);
                        }
                        at += n;
                        if size == 0 {
                            self.state = State::Trailers;
                        } else {
                            put_size(out, size);
                            self.state = State::Data(size);
                        }
                    }
                    Ok(Status::Partial) if rest.len() < MAX_SIZE_LINE => return Ok(at),
                    _ => return Err(ChunkError::Size),
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    out.extend_from_slice(&rest[..n]);
                    at += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return if rest.is_empty() || rest == b"\r" {
                            Ok(at)
                        } else {
                            Err(ChunkError::DataEnd)
                        };
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::DataEnd);
                    }
                    at += 2;
                    out.extend_from_slice(b"\r\n");
                    self.state = State::Size;
                }
                State::Trailers => {
                    // The common case: no trailers, just the final CRLF.
                    if rest.starts_with(b"\r\n") {
                        at += 2;
                    } else {
                        match parse_trailers(rest) {
                            Ok(Some(n)) => at += n,
                            Ok(None) if rest.len() < MAX_TRAILERS => return Ok(at),
                            _ => return Err(ChunkError::Trailers),
                        }
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                    self.state = State::Done;
                }
            }
        }
    }
}

/// The length of a complete trailer section (fields, then the empty line) at the start
/// of `buf`; `None` while incomplete.
fn parse_trailers(buf: &[u8]) -> Result<Option<usize>, ChunkError> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    match httparse::parse_headers(buf, &mut fields) {
        Ok(Status::Complete((n, _))) => Ok(Some(n)),
        Ok(Status::Partial) => Ok(None),
        Err(_) => Err(ChunkError::Trailers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut used_total = 0;
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            let used = d.feed(&pending, &mut out)?;
            used_total += used;
            pending.drain(..used);
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "not done: {:?}", d.state);
        Ok((out, used_total))
    }

    #[test]
    fn reencodes_in_any_piece_sizes() {
        let input =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (out, used) = decode_all(input, step).unwrap();
            assert_eq!(
                out, b"5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
                "step {step}"
            );
            assert_eq!(used, input.len() - 4, "step {step}");
        }
        let (out, _) = decode_all(b"0\r\n\r\n", 1).unwrap();
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn refuses_bad_framing() {
        for bad in [
            &b"\r\nhello\r\n0\r\n\r\n"[..],
            b"x\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"-5\r\nhello\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            assert!(
                d.feed(bad, &mut out).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // An endless size line is cut off.
        let mut d = Decoder::new();
        let long = [b'1'; 1]
            .iter()
            .chain([b';'; 1].iter())
            .copied()
            .chain(std::iter::repeat_n(b'a', MAX_SIZE_LINE))
            .collect::<Vec<_>>();
        assert!(d.feed(&long, &mut Vec::new()).is_err());
    }
}
