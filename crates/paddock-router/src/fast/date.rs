//! The `date` field the router adds when a backend sent none (RFC 9110 §6.6.1: a proxy with
//! a clock adds one), and on its own pages. Formatted at most once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Append `date: <IMF-fixdate>\r\n`.
pub(crate) fn put(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(c.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn imf_fixdate() {
        let mut out = Vec::new();
        super::put(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("date: ") && s.ends_with(" GMT\r\n"), "{s}");
        assert_eq!(s.len(), "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n".len());
    }
}
