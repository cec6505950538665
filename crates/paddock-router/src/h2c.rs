//! `Upgrade: h2c` (RFC 7540 §3.2): answer 101, then serve HTTP/2 on the connection, with the
//! upgraded request as stream 1.
//!
//! hyper's HTTP/2 server only takes requests from frames, so the upgraded request is
//! re-encoded as a HEADERS frame on stream 1 (HPACK literals without indexing, so the
//! decoder's table is untouched) and placed right after the client's connection preface and
//! first SETTINGS frame. Only requests without a body are upgraded; others are answered over
//! HTTP/1.1 (a server may always ignore Upgrade).

use http::header::{self, HeaderMap};
use http::{Request, Version};
use hyper::body::{Body, Incoming};
use tokio::io::{AsyncRead, AsyncReadExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_FRAME_SIZE's default: the largest frame the server accepts before it has
/// said otherwise.
const MAX_FRAME: usize = 16_384;

/// Whether `req` asks for h2c and can be upgraded.
pub(crate) fn wants(req: &Request<Incoming>) -> bool {
    // Cheapest test first: this runs on every HTTP/1.1 request, and almost none has
    // `upgrade` (a well-known name, so its lookup parses no string).
    req.version() == Version::HTTP_11
        && req.body().is_end_stream()
        && req
            .headers()
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
        && req.headers().contains_key(&HTTP2_SETTINGS)
}

static HTTP2_SETTINGS: header::HeaderName = header::HeaderName::from_static("http2-settings");

fn int(out: &mut Vec<u8>, prefix_bits: u8, first: u8, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00); // literal header field without indexing, new name
    int(out, 7, 0, name.len());
    out.extend_from_slice(name);
    int(out, 7, 0, value.len());
    out.extend_from_slice(value);
}

fn connection_specific(name: &str, h: &HeaderMap) -> bool {
    let listed = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(name));
    listed
        || matches!(
            name,
            "connection"
                | "upgrade"
                | "http2-settings"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "te"
                | "host"
        )
}

/// The request as an HTTP/2 HEADERS frame on stream 1 (END_STREAM | END_HEADERS), or
/// `None` when it does not fit one frame.
pub(crate) fn headers_frame(req: &Request<Incoming>) -> Option<Vec<u8>> {
    let host = req.headers().get(header::HOST)?;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut block = Vec::with_capacity(256);
    literal(&mut block, b":method", req.method().as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    literal(&mut block, b":authority", host.as_bytes());
    literal(&mut block, b":path", path.as_bytes());
    for (name, value) in req.headers() {
        if !connection_specific(name.as_str(), req.headers()) {
            literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if block.len() > MAX_FRAME {
        return None;
    }
    let n = block.len();
    let mut frame = Vec::with_capacity(9 + n);
    frame.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    frame.push(0x1); // HEADERS
    frame.push(0x1 | 0x4); // END_STREAM | END_HEADERS
    frame.extend_from_slice(&1u32.to_be_bytes()); // stream 1
    frame.extend_from_slice(&block);
    Some(frame)
}

/// Read the client's preface and first SETTINGS frame from the upgraded connection and
/// return the bytes to replay with `stream1` placed after them. `None`: not HTTP/2.
pub(crate) async fn replay<R: AsyncRead + Unpin>(io: &mut R, stream1: Vec<u8>) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    let need = |buf: &Vec<u8>| -> Option<usize> {
        if buf.len() < PREFACE.len() + 9 {
            return None;
        }
        let h = &buf[PREFACE.len()..PREFACE.len() + 9];
        Some(PREFACE.len() + 9 + ((h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize))
    };
    loop {
        let n = buf.len().min(PREFACE.len());
        if buf[..n] != PREFACE[..n] {
            return None;
        }
        if let Some(end) = need(&buf) {
            if buf[PREFACE.len() + 3] != 0x4 || end > PREFACE.len() + 9 + MAX_FRAME {
                return None; // the first frame must be SETTINGS
            }
            if buf.len() >= end {
                let rest = buf.split_off(end);
                buf.extend_from_slice(&stream1);
                buf.extend_from_slice(&rest);
                return Some(buf);
            }
        }
        if io.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers() {
        // RFC 7541 C.1: 10 with a 5-bit prefix, 1337 with a 5-bit prefix.
        let mut o = Vec::new();
        int(&mut o, 5, 0, 10);
        assert_eq!(o, [0x0a]);
        let mut o = Vec::new();
        int(&mut o, 5, 0, 1337);
        assert_eq!(o, [0x1f, 0x9a, 0x0a]);
        let mut o = Vec::new();
        int(&mut o, 7, 0, 127);
        assert_eq!(o, [0x7f, 0x00]);
    }

    #[tokio::test]
    async fn stream1_goes_after_the_first_settings_frame() {
        let mut client = PREFACE.to_vec();
        client.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        client.extend_from_slice(b"NEXT");
        let mut io: &[u8] = &client;
        let out = replay(&mut io, b"S1".to_vec()).await.unwrap();
        let at = PREFACE.len() + 15;
        assert_eq!(&out[..at], &client[..at]);
        assert_eq!(&out[at..], b"S1NEXT");
        let mut bad: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(replay(&mut bad, vec![]).await.is_none());
    }
}
