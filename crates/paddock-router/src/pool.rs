//! Backend connections: a small keep-alive pool per (run, port), one pool per worker thread.
//!
//! Owns: dialling through the [`Dialer`], the HTTP/1.1 handshake, reuse. A connection goes
//! back to the pool when its response body has been read to the end (never mid-body), and
//! only while the backend keeps it open. A request that could not be written on a pooled
//! connection (closed under our feet) is retried once on a fresh one. Never parses bodies.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;

use crate::dial::Dialer;

type Sender = SendRequest<Incoming>;

/// FNV-1a for the idle map. `Authority` hashes byte by byte (lower-cased), which std's
/// SipHash turns into most of a checkout's cost; the keys are the route table's
/// `run_id:port`, never a client's input, so a DoS-resistant hash buys nothing here.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u8(b);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
}

type IdleMap = HashMap<Authority, Vec<(Sender, Instant)>, BuildHasherDefault<Fnv>>;

pub(crate) struct Pool {
    dialer: Arc<dyn Dialer>,
    idle: Mutex<IdleMap>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("cannot connect: {0}")]
    Dial(#[source] io::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

/// Hands the connection back to its pool once the response body is complete.
pub(crate) struct Checkin {
    pool: Arc<Pool>,
    key: Authority,
    sender: Sender,
}

impl Checkin {
    pub(crate) fn done(self) {
        let Checkin { pool, key, sender } = self;
        if sender.is_closed() {
            return;
        }
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() > 64 {
            // Runs come and go: forget keys whose connections have all closed.
            idle.retain(|_, v| {
                v.retain(|(s, _)| !s.is_closed());
                !v.is_empty()
            });
        }
        let v = idle.entry(key).or_default();
        if v.len() < pool.max_idle {
            v.push((sender, Instant::now()));
        }
    }
}

impl Pool {
    pub(crate) fn new(dialer: Arc<dyn Dialer>, max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            dialer,
            idle: Mutex::new(IdleMap::default()),
            max_idle,
            idle_timeout,
        }
    }

    fn checkout(&self, key: &Authority) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = idle.get_mut(key)?;
        while let Some((s, since)) = v.pop() {
            if !s.is_closed() && since.elapsed() < self.idle_timeout {
                return Some(s);
            }
        }
        None
    }

    async fn connect(&self, run_id: &str, port: u16) -> Result<Sender, SendError> {
        let stream = self
            .dialer
            .dial(run_id, port)
            .await
            .map_err(SendError::Dial)?;
        let (sender, conn) = Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Send `req` (origin-form URI) to `port` inside `run_id`.
    pub(crate) async fn send(
        self: &Arc<Self>,
        key: &Authority,
        run_id: &str,
        port: u16,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
        let mut fresh = false;
        loop {
            let mut sender = match self.checkout(key) {
                Some(s) => s,
                None => {
                    fresh = true;
                    self.connect(run_id, port).await?
                }
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(SendError::Http(e));
                }
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let reusable = !resp
                        .headers()
                        .get(http::header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    let checkin = reusable.then(|| Checkin {
                        pool: self.clone(),
                        key: key.clone(),
                        sender,
                    });
                    return Ok((resp, checkin));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: a pooled connection closed under us; try a fresh one.
                    Some(r) if !fresh => req = r,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }
}
