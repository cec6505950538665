//! The response body type: either a backend's streamed body or a page the router wrote.
//! An enum rather than a boxed trait object, so forwarding allocates nothing for it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::pool::Checkin;

pub(crate) enum RouterBody {
    /// Streamed from the backend, frame by frame (trailers included); its connection goes
    /// back to the pool once the body has been read to the end.
    Stream(Incoming, Option<Checkin>),
    /// Written by the router; `None` once sent.
    Full(Option<Bytes>),
}

impl RouterBody {
    pub(crate) fn full(b: Bytes) -> RouterBody {
        RouterBody::Full(Some(b))
    }

    pub(crate) fn empty() -> RouterBody {
        RouterBody::Full(None)
    }
}

impl Body for RouterBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RouterBody::Stream(b, checkin) => {
                let r = Pin::new(b).poll_frame(cx);
                if let Poll::Ready(None) = r
                    && let Some(c) = checkin.take()
                {
                    c.done();
                }
                r
            }
            RouterBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RouterBody::Stream(b, _) => b.is_end_stream(),
            RouterBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RouterBody::Stream(b, _) => b.size_hint(),
            RouterBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RouterBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for RouterBody {
    fn drop(&mut self) {
        // Bodies that were empty from the start (HEAD, 204, 304) may never be polled.
        if let RouterBody::Stream(b, checkin) = self
            && b.is_end_stream()
            && let Some(c) = checkin.take()
        {
            c.done();
        }
    }
}
