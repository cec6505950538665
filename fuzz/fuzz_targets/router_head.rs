//! The router's HTTP/1.1 fast path (`paddock_router::fuzzing`): request and response head
//! parsing and rewriting, the chunked body decoder, the blank-line pre-check, and the
//! `Host` grammar (`paddock_router::parse_host`).
//!
//! Input: one selector byte, then the bytes a client (request head, chunked body) or a
//! backend (response head) sent, or a Host value.
//!
//! Properties:
//! - nothing panics;
//! - a rewritten head is canonical: parsing what the router sends gives the same head
//!   again, byte for byte, with the same framing and Host (so the backend reads the
//!   message exactly as the router did), and it never carries a bare LF or a hop-by-hop
//!   field;
//! - the blank-line pre-check never hides a complete head: for every prefix the router
//!   may have looked at before, a head that parses complete is seen as possibly complete;
//! - the chunked decoder gives the same body, the same verdict and the same bytes used
//!   whatever pieces the input arrives in, and its output is itself valid chunked coding
//!   that decodes to itself;
//! - a Host that parses names labels that are DNS labels, and prints back to a Host that
//!   parses to the same target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_router::fuzzing::{
    ChunkedDecoder, RequestRefusal, ResponseHead, has_blank_line, request_head, response_head,
};
use paddock_router::{Target, is_dns_label, parse_host};

/// The fast path's limit on header fields (and hyper's default).
const MAX_HEADERS: usize = 100;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn header_names(head: &[u8]) -> Vec<String> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|l| {
            let l = l.strip_suffix(b"\r")?;
            let colon = l.iter().position(|&b| b == b':')?;
            Some(String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase())
        })
        .collect()
}

fn no_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && head[i - 1] == b'\r'))
}

fn requests(data: &[u8], https: bool) {
    let mut out = Vec::new();
    let first = request_head(data, b"10.0.0.1", "for=10.0.0.1", https, &mut out);
    // The pre-check: an earlier look at `from` bytes (when the head was not complete yet)
    // must let the complete head through. Only the last few positions can go wrong (the
    // search starts two bytes before `from`), so those are the ones checked.
    if let Ok(r) = &first {
        for from in (r.len.saturating_sub(8).max(1)..r.len).chain([1]) {
            if from < r.len
                && !has_blank_line(&data[..r.len], from)
                && request_head(&data[..from], b"", "for=x", false, &mut Vec::new())
                    == Err(RequestRefusal::Partial)
            {
                panic!(
                    "a complete head of {} bytes is hidden after a look at {from}",
                    r.len
                );
            }
        }
    }
    let Ok(r) = first else { return };
    assert!(r.len <= data.len());
    if let Some(h) = &r.host {
        assert!(h.end <= r.len, "Host outside the head");
    }
    assert!(no_bare_lf(&out), "bare LF in the forwarded head");
    for name in header_names(&out) {
        assert!(
            !HOP_BY_HOP.contains(&name.as_str()),
            "hop-by-hop field {name} forwarded"
        );
    }
    // What the backend gets parses as the same request, and rewrites to itself (unless the
    // router's own fields took it past the header count a parser accepts).
    if header_names(&out).len() > MAX_HEADERS {
        return;
    }
    let mut again = Vec::new();
    let second =
        request_head(&out, b"10.0.0.1", "for=10.0.0.1", https, &mut again).unwrap_or_else(|e| {
            panic!(
                "the forwarded head does not parse: {e:?}\n{}",
                String::from_utf8_lossy(&out)
            )
        });
    assert_eq!(
        second.len,
        out.len(),
        "forwarded head is not one whole head"
    );
    assert_eq!(second.framing, r.framing, "framing changed on the way");
    assert_eq!(second.head_method, r.head_method);
    assert_eq!(second.retryable, r.retryable);
    assert_eq!(
        second.host.map(|h| &out[h]),
        r.host.clone().map(|h| &data[h]),
        "Host changed on the way"
    );
    assert!(!second.close, "Connection: close forwarded");
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&out),
        "the forwarded head is not canonical"
    );
}

fn responses(data: &[u8], head_request: bool, close_client: bool) {
    let mut out = Vec::new();
    let Ok(Some(first)) = response_head(data, head_request, close_client, &mut out) else {
        return;
    };
    let ResponseHead::Final { len, framing, .. } = first else {
        let ResponseHead::Informational { len } = first else {
            unreachable!()
        };
        assert!(len <= data.len());
        return;
    };
    assert!(len <= data.len());
    assert!(no_bare_lf(&out), "bare LF in the head sent to the client");
    for name in header_names(&out) {
        assert!(
            !HOP_BY_HOP.contains(&name.as_str()) || name == "connection",
            "hop-by-hop field {name} passed on"
        );
    }
    if header_names(&out).len() > MAX_HEADERS {
        return;
    }
    let mut again = Vec::new();
    let second = response_head(&out, head_request, close_client, &mut again)
        .unwrap_or_else(|e| {
            panic!(
                "the client's head does not parse: {e}\n{}",
                String::from_utf8_lossy(&out)
            )
        })
        .expect("the client's head is complete");
    let ResponseHead::Final {
        len: len2,
        framing: framing2,
        ..
    } = second
    else {
        panic!("a final head became informational");
    };
    assert_eq!(len2, out.len());
    assert_eq!(framing2, framing, "framing changed on the way");
    // The same fields (a `date` the router added comes before its `connection: close`
    // the second time: the order of the router's own fields may differ).
    let lines = |h: &[u8]| {
        let mut v: Vec<Vec<u8>> = h.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        v[1..].sort();
        v
    };
    assert_eq!(
        lines(&again),
        lines(&out),
        "the client's head is not canonical:\n{}\n{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&again)
    );
}

/// Decode `input` fed in pieces of the given sizes (cycled); returns the output, the
/// verdict and the bytes used.
fn decode(input: &[u8], sizes: &[usize]) -> (Vec<u8>, Result<bool, String>, usize) {
    let mut d = ChunkedDecoder::default();
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut used = 0;
    let mut at: usize = 0;
    let mut k = 0;
    loop {
        let n = sizes[k % sizes.len()].max(1);
        k += 1;
        let end = at.saturating_add(n).min(input.len());
        pending.extend_from_slice(&input[at..end]);
        at = end;
        match d.feed(&pending, &mut out) {
            Ok(u) => {
                assert!(u <= pending.len());
                used += u;
                pending.drain(..u);
            }
            Err(e) => return (out, Err(e), used),
        }
        if d.is_done() || at == input.len() {
            return (out, Ok(d.is_done()), used);
        }
    }
}

fn chunked(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (whole, whole_ok, whole_used) = decode(rest, &[usize::MAX]);
    let sizes: Vec<usize> = [split as usize % 7 + 1, split as usize / 7 % 5 + 1, 1, 64].to_vec();
    let (piece, piece_ok, piece_used) = decode(rest, &sizes);
    match (&whole_ok, &piece_ok) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "done differs with pieces");
            assert_eq!(whole, piece, "body differs with pieces");
            if *a {
                assert_eq!(whole_used, piece_used, "bytes used differ with pieces");
            }
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("verdict differs with pieces: whole {a:?}, pieces {b:?}"),
    }
    if whole_ok == Ok(true) {
        let (again, ok, used) = decode(&whole, &[usize::MAX]);
        assert_eq!(ok, Ok(true), "re-encoded body does not decode");
        assert_eq!(used, whole.len());
        assert_eq!(again, whole, "re-encoded body is not canonical");
    }
}

fn host(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse_host(raw) else { return };
    let printed = match &t {
        Target::Index => "localhost".to_string(),
        Target::Run(r) => {
            assert!(is_dns_label(r), "run {r:?} is not a DNS label");
            format!("{r}.localhost")
        }
        Target::Endpoint { run, endpoint } => {
            assert!(is_dns_label(run), "run {run:?} is not a DNS label");
            assert!(
                is_dns_label(endpoint),
                "endpoint {endpoint:?} is not a DNS label"
            );
            format!("{endpoint}.{run}.localhost:8080")
        }
    };
    assert_eq!(parse_host(&printed).as_ref(), Ok(&t), "{printed}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => requests(rest, false),
        1 => requests(rest, true),
        2 => responses(rest, false, false),
        3 => responses(rest, true, false),
        4 => responses(rest, false, true),
        5 | 6 => chunked(rest),
        _ => host(rest),
    }
});
