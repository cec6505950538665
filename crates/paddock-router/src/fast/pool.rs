//! Idle backend connections of the fast path: plain TCP streams kept per (run, port), one
//! set per worker thread.
//!
//! Owns: keep-alive bookkeeping (at most `max_idle` per backend, dropped after
//! `idle_timeout`), and the check that a connection is still usable when it is taken: the
//! backend has not closed it nor sent anything unasked. A connection is only ever put back
//! by the exchange that finished cleanly on it. Never reads or writes a message.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::net::TcpStream;

/// Per backend (`run_id:port`), its idle connections, most recent last. A list searched
/// by comparing the key's bytes: a worker talks to few backends, and this is cheaper than
/// hashing the key on every request.
type IdleMap = Vec<(Authority, Vec<(TcpStream, Instant)>)>;

fn find<'a>(map: &'a mut IdleMap, key: &Authority) -> Option<&'a mut Vec<(TcpStream, Instant)>> {
    let key = key.as_str();
    map.iter_mut()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v)
}

pub(crate) struct Idle {
    map: Mutex<IdleMap>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// True while the backend has neither closed `s` nor sent bytes on it (an idle HTTP/1.1
/// connection has nothing to say). Costs no system call when the socket is known idle.
fn usable(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl Idle {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Idle {
        Idle {
            map: Mutex::new(IdleMap::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// An idle connection to `key`, if one is still usable.
    pub(crate) fn take(&self, key: &Authority) -> Option<TcpStream> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let v = find(&mut map, key)?;
        while let Some((s, since)) = v.pop() {
            if since.elapsed() < self.idle_timeout && usable(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Keep `s` for the next request to `key`.
    pub(crate) fn put(&self, key: &Authority, s: TcpStream) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 64 {
            // Runs come and go: forget connections that are stale or closed.
            let timeout = self.idle_timeout;
            map.retain_mut(|(_, v)| {
                v.retain(|(s, since)| since.elapsed() < timeout && usable(s));
                !v.is_empty()
            });
        }
        if let Some(v) = find(&mut map, key) {
            if v.len() < self.max_idle {
                v.push((s, Instant::now()));
            }
            return;
        }
        map.push((key.clone(), vec![(s, Instant::now())]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn closed_or_chatty_connections_are_not_handed_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let key: Authority = "run_x:1".parse().unwrap();
        let idle = Idle::new(4, Duration::from_secs(30));

        let c = TcpStream::connect(addr).await.unwrap();
        let (_server_side, _) = l.accept().await.unwrap();
        idle.put(&key, c);
        assert!(idle.take(&key).is_some());
        assert!(idle.take(&key).is_none());

        let c = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = l.accept().await.unwrap();
        drop(server_side);
        idle.put(&key, c);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(idle.take(&key).is_none(), "closed by the backend");

        let c = TcpStream::connect(addr).await.unwrap();
        let (mut server_side, _) = l.accept().await.unwrap();
        server_side.write_all(b"x").await.unwrap();
        idle.put(&key, c);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(idle.take(&key).is_none(), "sent bytes unasked");
    }
}
