//! A connector that shows a test every exchange it carries: the request
//! and the answer, as frames, after the answer arrived.

use std::fmt;
use std::sync::Arc;

use syncline::transport::{BoxFuture, Connection, Connector, Frame, Subscription, TransportError};

/// What a test does with each exchange: `(request, answer)`.
pub type Inspect = Arc<dyn Fn(&[u8], &[u8]) + Send + Sync>;

/// Wraps `inner`, calling `inspect` with every exchange that got an answer.
pub fn inspected(inner: Arc<dyn Connector>, inspect: Inspect) -> Arc<dyn Connector> {
    Arc::new(Inspected { inner, inspect })
}

struct Inspected {
    inner: Arc<dyn Connector>,
    inspect: Inspect,
}

struct InspectedConnection {
    inner: Box<dyn Connection>,
    inspect: Inspect,
}

impl fmt::Debug for Inspected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspected")
            .field("inner", &self.inner)
            .finish()
    }
}

impl fmt::Debug for InspectedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InspectedConnection")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Connector for Inspected {
    fn addr(&self) -> &str {
        self.inner.addr()
    }

    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            Ok(Box::new(InspectedConnection {
                inner: self.inner.connect().await?,
                inspect: self.inspect.clone(),
            }) as Box<dyn Connection>)
        })
    }
}

impl Connection for InspectedConnection {
    fn exchange(&self, request: Frame) -> BoxFuture<'_, Result<Frame, TransportError>> {
        Box::pin(async move {
            let asked = request.clone();
            let answer = self.inner.exchange(request).await?;
            (self.inspect)(&asked, &answer);
            Ok(answer)
        })
    }

    fn subscribe(&self, request: Frame) -> BoxFuture<'_, Result<Subscription, TransportError>> {
        self.inner.subscribe(request)
    }

    fn close(&self) {
        self.inner.close()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}
