//! The DNS stub of a run: answers on 127.0.0.1:53 (UDP and TCP) inside the run's netns.
//!
//! Allowed names get a synthetic IPv4 address from 198.18.0.0/15, stable for the run and
//! remembered in a [`SyntheticMap`] so that the transparent listeners can map a connection
//! to that address back to the name. Denied names get NXDOMAIN. AAAA (and every other
//! type) for an allowed name gets an empty NOERROR answer: clients fall back to A, and
//! nothing about the real world is revealed.
//!
//! The wire format is parsed here by a small, strict parser rather than hickory-proto: the
//! stub reads one question and writes one fixed-shape answer, so a 150-line parser with
//! explicit bounds (name ≤ 255 bytes, labels ≤ 63, at most 16 compression hops, pointers
//! only backwards, every read checked) is less code to trust than a general DNS library,
//! and adds no dependency to build on a 2-core machine.
//!
//! Never: forwards a query anywhere, resolves a name for real, or allocates without bound
//! (the synthetic map has a fixed capacity; TCP connections are capped and time out).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use crate::policy::{Policy, Query};
use crate::record::{NetRecord, RecordKind, Recorder};

/// First synthetic address (198.18.0.0/15, RFC 2544 benchmarking range).
const SYNTH_BASE: u32 = u32::from_be_bytes([198, 18, 0, 1]);
/// Number of synthetic addresses: the /15 less the network address and the broadcast.
const SYNTH_SPAN: u32 = (1 << 17) - 2;

/// Whether `ip` is in the synthetic range.
pub fn is_synthetic(ip: Ipv4Addr) -> bool {
    let v = u32::from(ip);
    (u32::from_be_bytes([198, 18, 0, 0])..=u32::from_be_bytes([198, 19, 255, 255])).contains(&v)
}

/// Name ⇄ synthetic address, for one run.
#[derive(Debug)]
pub struct SyntheticMap {
    cap: usize,
    inner: Mutex<MapInner>,
}

#[derive(Debug, Default)]
struct MapInner {
    by_name: HashMap<String, Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, String>,
    next: u32,
}

impl SyntheticMap {
    /// A map holding at most `cap` names (at most the size of the range).
    pub fn new(cap: usize) -> Self {
        SyntheticMap {
            cap: cap.min(SYNTH_SPAN as usize),
            inner: Mutex::new(MapInner::default()),
        }
    }

    /// The address of `name` (lowercase, no trailing dot), allocating one if needed.
    /// `None` when the map is full.
    pub fn addr_for(&self, name: &str) -> Option<Ipv4Addr> {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = m.by_name.get(name) {
            return Some(*a);
        }
        if m.by_name.len() >= self.cap {
            return None;
        }
        let a = Ipv4Addr::from(SYNTH_BASE + m.next);
        m.next += 1;
        m.by_name.insert(name.to_string(), a);
        m.by_addr.insert(a, name.to_string());
        Some(a)
    }

    /// The name a synthetic address stands for.
    pub fn name_of(&self, ip: Ipv4Addr) -> Option<String> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.by_addr.get(&ip).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_name
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Record types the stub names in its records.
pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// Response codes.
const NOERROR: u8 = 0;
const FORMERR: u8 = 1;
const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;
const NOTIMP: u8 = 4;
const REFUSED: u8 = 5;

/// A parsed question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    pub rd: bool,
    /// Wire labels (case kept), for echoing.
    pub labels: Vec<Vec<u8>>,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// The name, lowercase, dotted, without the trailing dot. Non-printable bytes are
    /// escaped so the name is always valid text for logs.
    pub fn name(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.labels.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            for &b in l {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    s.push(b.to_ascii_lowercase() as char);
                } else {
                    s.push_str(&format!("\\{b:03}"));
                }
            }
        }
        s
    }

    /// Whether the name is a plausible host name (letters, digits, '-', '_').
    fn is_hostname(&self) -> bool {
        !self.labels.is_empty()
            && self.labels.iter().all(|l| {
                l.iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            })
    }
}

/// Why a message could not be parsed; `Some(id)` when the header was readable (a FORMERR
/// can be sent back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Too short for a header: drop silently.
    NoHeader,
    /// Not a query (QR=1): drop silently (never answer answers).
    NotQuery,
    /// Malformed or unsupported: answer with this rcode.
    Reply { id: u16, rd: bool, rcode: u8 },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parse the one question of a query.
pub fn parse_query(msg: &[u8]) -> Result<Question, ParseError> {
    if msg.len() < 12 {
        return Err(ParseError::NoHeader);
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let rd = flags & 0x0100 != 0;
    if flags & 0x8000 != 0 {
        return Err(ParseError::NotQuery);
    }
    let reply = |rcode| ParseError::Reply { id, rd, rcode };
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Err(reply(NOTIMP));
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    if qd != 1 {
        return Err(reply(FORMERR));
    }
    let (labels, end) = read_name(msg, 12).ok_or(reply(FORMERR))?;
    let qtype = be16(msg, end).ok_or(reply(FORMERR))?;
    let qclass = be16(msg, end + 2).ok_or(reply(FORMERR))?;
    Ok(Question {
        id,
        rd,
        labels,
        qtype,
        qclass,
    })
}

/// Read a (possibly compressed) name at `start`; returns the labels and the offset just
/// after the name in the original position.
fn read_name(msg: &[u8], start: usize) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut labels = Vec::new();
    let mut pos = start;
    let mut end = None;
    let mut hops = 0;
    let mut total = 1usize;
    loop {
        let len = *msg.get(pos)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Some((labels, end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + len)?;
                total += len + 1;
                if total > 255 {
                    return None;
                }
                labels.push(label.to_vec());
                pos += 1 + len;
            }
            0xc0 => {
                let ptr = (u16::from_be_bytes([msg[pos] & 0x3f, *msg.get(pos + 1)?])) as usize;
                hops += 1;
                // Only strictly backwards, and few: no loops, no amplification.
                if ptr >= pos || hops > 16 {
                    return None;
                }
                if end.is_none() {
                    end = Some(pos + 2);
                }
                pos = ptr;
            }
            _ => return None,
        }
    }
}

/// The outcome of one query, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub bytes: Vec<u8>,
    pub rcode: u8,
    pub addr: Option<Ipv4Addr>,
}

/// Answer a query message (the transport-independent core).
pub fn answer(
    msg: &[u8],
    policy: &Policy,
    map: &SyntheticMap,
) -> Option<(Option<Question>, Option<crate::policy::Decision>, Answer)> {
    let q = match parse_query(msg) {
        Ok(q) => q,
        Err(ParseError::Reply { id, rd, rcode }) => {
            return Some((None, None, error_reply(id, rd, rcode)));
        }
        Err(_) => return None,
    };
    if q.qclass != CLASS_IN {
        return Some((None, None, build(&q, REFUSED, None)));
    }
    let name = q.name();
    if !q.is_hostname() {
        let d = crate::policy::Decision::builtin_deny("DNS name with bytes no host name has");
        return Some((Some(q.clone()), Some(d), build(&q, NXDOMAIN, None)));
    }
    let d = policy.decide(&Query::host(&name));
    if !d.allowed {
        let a = build(&q, NXDOMAIN, None);
        return Some((Some(q), Some(d), a));
    }
    let a = match q.qtype {
        TYPE_A => match map.addr_for(&name) {
            Some(ip) => build(&q, NOERROR, Some(ip)),
            None => build(&q, SERVFAIL, None),
        },
        _ => build(&q, NOERROR, None),
    };
    Some((Some(q), Some(d), a))
}

fn header(out: &mut Vec<u8>, id: u16, rd: bool, rcode: u8, qd: u16, an: u16) {
    out.extend_from_slice(&id.to_be_bytes());
    // QR=1, opcode 0, AA=1, RD echoed, RA=1.
    let mut flags: u16 = 0x8000 | 0x0400 | 0x0080 | rcode as u16;
    if rd {
        flags |= 0x0100;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&qd.to_be_bytes());
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
}

fn error_reply(id: u16, rd: bool, rcode: u8) -> Answer {
    let mut out = Vec::with_capacity(12);
    header(&mut out, id, rd, rcode, 0, 0);
    Answer {
        bytes: out,
        rcode,
        addr: None,
    }
}

fn build(q: &Question, rcode: u8, addr: Option<Ipv4Addr>) -> Answer {
    let mut out = Vec::with_capacity(64);
    header(&mut out, q.id, q.rd, rcode, 1, addr.is_some() as u16);
    for l in &q.labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
    if let Some(ip) = addr {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&300u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Answer {
        bytes: out,
        rcode,
        addr,
    }
}

/// Shared state of one run's stub.
pub struct DnsStub {
    pub policy: Arc<Policy>,
    pub map: Arc<SyntheticMap>,
    pub recorder: Recorder,
}

impl DnsStub {
    fn handle(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let t0 = Instant::now();
        let (q, d, a) = answer(msg, &self.policy, &self.map)?;
        if let (Some(q), Some(d)) = (q, d) {
            let mut r = NetRecord::new(RecordKind::Dns, q.name(), d);
            r.method = Some(qtype_name(q.qtype));
            r.status = Some(a.rcode as u16);
            r.bytes_up = msg.len() as u64;
            r.bytes_down = a.bytes.len() as u64;
            r.detail = a.addr.map(|ip| ip.to_string());
            r.finish(t0);
            self.recorder.emit(r);
        }
        Some(a.bytes)
    }

    /// Serve UDP until the socket fails.
    pub async fn serve_udp(self: Arc<Self>, sock: UdpSocket) {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = match sock.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "dns udp socket closed");
                    return;
                }
            };
            if let Some(reply) = self.handle(&buf[..n]) {
                let _ = sock.send_to(&reply, from).await;
            }
        }
    }

    /// Serve TCP (length-prefixed messages, several per connection, 10 s idle timeout, at
    /// most 64 connections at once).
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(64));
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(conn);
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut buf = vec![0u8; 65535];
                loop {
                    let mut len = [0u8; 2];
                    let idle = Duration::from_secs(10);
                    match tokio::time::timeout(idle, conn.read_exact(&mut len)).await {
                        Ok(Ok(_)) => {}
                        _ => return,
                    }
                    let n = u16::from_be_bytes(len) as usize;
                    match tokio::time::timeout(idle, conn.read_exact(&mut buf[..n])).await {
                        Ok(Ok(_)) => {}
                        _ => return,
                    }
                    let Some(reply) = me.handle(&buf[..n]) else {
                        return;
                    };
                    let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&reply);
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}

fn qtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

/// Build a query message (tests and tools).
pub fn make_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for l in name.split('.').filter(|l| !l.is_empty()) {
        out.push(l.len().min(255) as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// rcode of a response.
pub fn rcode_of(resp: &[u8]) -> Option<u8> {
    Some(resp.get(3)? & 0x0f)
}

/// The A records' addresses in a response produced by this stub (one answer at most).
pub fn answer_addr(resp: &[u8]) -> Option<Ipv4Addr> {
    let an = be16(resp, 6)?;
    if an == 0 {
        return None;
    }
    let b = resp.get(resp.len().checked_sub(4)?..)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_config::{NetworkConfig, NetworkPolicy, Rule, RuleAction};

    fn strict_allowing(host: &str) -> Policy {
        Policy::new(
            &NetworkConfig {
                policy: NetworkPolicy::Strict,
                rules: vec![Rule {
                    host: host.parse().unwrap(),
                    port: None,
                    allow_methods: vec![],
                    deny_methods: vec![],
                    allow_paths: vec![],
                    deny_paths: vec![],
                    action: RuleAction::Allow,
                }],
                passthrough: vec![],
                headers: vec![],
            },
            &[],
        )
    }

    #[test]
    fn allowed_gets_stable_synthetic_address_denied_gets_nxdomain() {
        let p = strict_allowing("api.example.com");
        let m = SyntheticMap::new(10);
        let (_, _, a) = answer(&make_query(7, "API.example.com", TYPE_A), &p, &m).unwrap();
        assert_eq!(rcode_of(&a.bytes), Some(NOERROR));
        let ip = answer_addr(&a.bytes).unwrap();
        assert!(is_synthetic(ip));
        assert_eq!(&a.bytes[..2], &7u16.to_be_bytes());
        let (_, _, b) = answer(&make_query(8, "api.example.com.", TYPE_A), &p, &m).unwrap();
        assert_eq!(answer_addr(&b.bytes), Some(ip));
        assert_eq!(m.name_of(ip).as_deref(), Some("api.example.com"));
        let (_, d, c) = answer(&make_query(9, "evil.test", TYPE_A), &p, &m).unwrap();
        assert_eq!(rcode_of(&c.bytes), Some(NXDOMAIN));
        assert!(!d.unwrap().allowed);
        let (_, _, e) = answer(&make_query(9, "api.example.com", TYPE_AAAA), &p, &m).unwrap();
        assert_eq!(rcode_of(&e.bytes), Some(NOERROR));
        assert_eq!(answer_addr(&e.bytes), None);
    }

    #[test]
    fn exfiltration_shapes_get_nxdomain() {
        let p = strict_allowing("api.example.com");
        let m = SyntheticMap::new(10);
        let long = format!("{}.exfil.test", "a".repeat(63));
        for (name, t) in [
            (long.as_str(), 16u16),
            ("c2VjcmV0.evil.test", 16),
            ("x.evil.test", 1),
        ] {
            let (_, _, a) = answer(&make_query(1, name, t), &p, &m).unwrap();
            assert_eq!(rcode_of(&a.bytes), Some(NXDOMAIN), "{name}");
        }
        assert!(m.is_empty());
    }

    #[test]
    fn hostile_messages_never_panic_or_loop() {
        let p = strict_allowing("a.b");
        let m = SyntheticMap::new(10);
        // Truncated.
        assert!(answer(&[1, 2, 3], &p, &m).is_none());
        let q = make_query(1, "a.b", 1);
        for n in 0..q.len() {
            let _ = answer(&q[..n], &p, &m);
        }
        // A compression loop: the name points at itself.
        let mut l = q[..12].to_vec();
        l.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let (_, _, a) = answer(&l, &p, &m).unwrap();
        assert_eq!(rcode_of(&a.bytes), Some(FORMERR));
        // A label longer than the message.
        let mut h = q[..12].to_vec();
        h.extend_from_slice(&[63, b'a', b'b']);
        assert_eq!(
            rcode_of(&answer(&h, &p, &m).unwrap().2.bytes),
            Some(FORMERR)
        );
        // A name longer than 255 bytes.
        let big = vec!["a".repeat(63); 5].join(".");
        let (_, _, a) = answer(&make_query(1, &big, 1), &p, &m).unwrap();
        assert_eq!(rcode_of(&a.bytes), Some(FORMERR));
        // Responses are never answered.
        let mut r = q.clone();
        r[2] |= 0x80;
        assert!(answer(&r, &p, &m).is_none());
    }

    #[test]
    fn synthetic_map_is_bounded() {
        let m = SyntheticMap::new(2);
        assert!(m.addr_for("a").is_some());
        assert!(m.addr_for("b").is_some());
        assert!(m.addr_for("c").is_none());
        assert!(m.addr_for("a").is_some());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let p = strict_allowing("a.b");
                let m = SyntheticMap::new(4);
                let _ = answer(&bytes, &p, &m);
            }

            #[test]
            fn mutated_queries_never_panic(i in 12usize..40, v in any::<u8>()) {
                let p = strict_allowing("*.example.com");
                let m = SyntheticMap::new(4);
                let mut q = make_query(3, "www.sub.example.com", 1);
                if i < q.len() { q[i] = v; }
                let _ = answer(&q, &p, &m);
            }
        }
    }
}
