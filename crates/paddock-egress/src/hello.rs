//! Just enough of a TLS ClientHello to route a connection: SNI and ALPN.
//!
//! The bytes are read (not consumed: the caller replays them to rustls or to a passthrough
//! upstream). Bounded: at most [`MAX_HELLO`] bytes over at most a few records; anything
//! malformed is `None`, never a panic.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest ClientHello accepted (post-quantum key shares make them ~2 KiB; 64 KiB is the
/// handshake message limit we accept).
pub const MAX_HELLO: usize = 64 * 1024;

/// What the ClientHello says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    pub sni: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

/// Read TLS records from `io` into `buf` until the whole ClientHello handshake message is
/// there; return it parsed. `buf` already holds the bytes read so far (at least 1).
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Hello>> {
    // Concatenated handshake payload of the records read so far.
    loop {
        let mut hs = Vec::new();
        let mut pos = 0;
        let mut complete = false;
        while pos + 5 <= buf.len() {
            if buf[pos] != 0x16 {
                return Ok(None);
            }
            let len = u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]) as usize;
            if len == 0 || len > 16384 + 256 {
                return Ok(None);
            }
            if pos + 5 + len > buf.len() {
                break;
            }
            hs.extend_from_slice(&buf[pos + 5..pos + 5 + len]);
            pos += 5 + len;
            if hs.len() >= 4 {
                let need = 4 + u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
                if hs[0] != 1 || need > MAX_HELLO {
                    return Ok(None);
                }
                if hs.len() >= need {
                    complete = true;
                    break;
                }
            }
        }
        if complete {
            return Ok(parse_client_hello(&hs));
        }
        if buf.len() >= MAX_HELLO + 1024 {
            return Ok(None);
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<usize> {
        Some(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        let s = self.take(2)?;
        Some(u16::from_be_bytes([s[0], s[1]]) as usize)
    }
}

/// Parse a ClientHello handshake message (type byte first).
pub fn parse_client_hello(hs: &[u8]) -> Option<Hello> {
    let mut c = Cur { b: hs, p: 0 };
    if c.u8()? != 1 {
        return None;
    }
    c.take(3)?; // length
    c.take(2 + 32)?; // version, random
    let n = c.u8()?;
    c.take(n)?; // session id
    let n = c.u16()?;
    c.take(n)?; // cipher suites
    let n = c.u8()?;
    c.take(n)?; // compression
    let mut out = Hello::default();
    if c.p == hs.len() {
        return Some(out);
    }
    let n = c.u16()?;
    let mut ext = Cur {
        b: c.take(n)?,
        p: 0,
    };
    while ext.p < ext.b.len() {
        let ty = ext.u16()?;
        let len = ext.u16()?;
        let data = ext.take(len)?;
        let mut d = Cur { b: data, p: 0 };
        match ty {
            0 => {
                let n = d.u16()?;
                let mut list = Cur {
                    b: d.take(n)?,
                    p: 0,
                };
                while list.p < list.b.len() {
                    let kind = list.u8()?;
                    let n = list.u16()?;
                    let name = list.take(n)?;
                    if kind == 0 && out.sni.is_none() {
                        let s = std::str::from_utf8(name).ok()?;
                        out.sni = Some(s.trim_end_matches('.').to_ascii_lowercase());
                    }
                }
            }
            16 => {
                let n = d.u16()?;
                let mut list = Cur {
                    b: d.take(n)?,
                    p: 0,
                };
                while list.p < list.b.len() {
                    let n = list.u8()?;
                    out.alpn.push(list.take(n)?.to_vec());
                }
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sni: &str) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        let mut sn = vec![0u8];
        sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sn.extend_from_slice(name);
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&((sn.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(sn.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sn);
        let alpn = [2u8, b'h', b'2'];
        ext.extend_from_slice(&16u16.to_be_bytes());
        ext.extend_from_slice(&((alpn.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        ext.extend_from_slice(&alpn);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0, 0, 0];
        let l = (body.len() as u32).to_be_bytes();
        hs[1..4].copy_from_slice(&l[1..]);
        hs.extend_from_slice(&body);
        hs
    }

    #[test]
    fn parses_sni_and_alpn_and_survives_truncation() {
        let hs = hello("Api.Example.com");
        let h = parse_client_hello(&hs).unwrap();
        assert_eq!(h.sni.as_deref(), Some("api.example.com"));
        assert_eq!(h.alpn, vec![b"h2".to_vec()]);
        for n in 0..hs.len() {
            let _ = parse_client_hello(&hs[..n]);
        }
    }

    #[tokio::test]
    async fn reads_across_records() {
        let hs = hello("a.test");
        let (a, b) = hs.split_at(10);
        let mut wire = vec![0x16, 3, 1];
        wire.extend_from_slice(&(a.len() as u16).to_be_bytes());
        wire.extend_from_slice(a);
        wire.extend_from_slice(&[0x16, 3, 1]);
        wire.extend_from_slice(&(b.len() as u16).to_be_bytes());
        wire.extend_from_slice(b);
        let mut buf = wire[..1].to_vec();
        let mut rest = &wire[1..];
        let h = read_client_hello(&mut rest, &mut buf)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h.sni.as_deref(), Some("a.test"));
        assert_eq!(buf, wire);
    }
}
