//! Loopback servers: a service listening on a name, and the tasks that run its
//! requests and subscriptions.

use std::future::Future;
use std::sync::{Arc, Mutex};

use syncline_transport::{BoxFuture, Limits, ServerHandle, Service, Side, TransportError};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use crate::network::{NetShared, lock};

/// A running loopback server. Shut it down with
/// [`shutdown`](LoopbackServer::shutdown); dropping it stops it too, without
/// waiting for its tasks.
#[derive(Debug)]
pub struct LoopbackServer {
    shared: Arc<ServerShared>,
    network: Arc<NetShared>,
    /// Yields `None` once every task of the server has finished.
    tasks: Option<mpsc::Receiver<()>>,
}

impl LoopbackServer {
    pub(crate) fn start(
        network: Arc<NetShared>,
        name: &str,
        service: Arc<dyn Service>,
        limits: Limits,
    ) -> Result<Self, TransportError> {
        let (token, tasks) = mpsc::channel(1);
        let shared = Arc::new(ServerShared {
            name: name.to_owned(),
            service,
            limits,
            shutdown: watch::Sender::new(false),
            task_token: Mutex::new(Some(token)),
        });
        network.register(shared.clone())?;
        Ok(LoopbackServer {
            shared,
            network,
            tasks: Some(tasks),
        })
    }

    /// The name the server listens on.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The limits the server enforces.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// Stops the server: the name is free again at once, requests in flight
    /// fail on their clients with [`TransportError::Closed`] by the peer, open
    /// subscriptions end with that error, and this returns once the server's
    /// tasks have stopped.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(mut tasks) = self.tasks.take() {
            // Each task holds a token sender; recv yields None when all are gone.
            while tasks.recv().await.is_some() {}
        }
    }

    fn stop(&self) {
        self.shared.shutdown.send_replace(true);
        lock(&self.shared.task_token).take();
        self.network.deregister(&self.shared);
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ServerHandle for LoopbackServer {
    fn local_addr(&self) -> String {
        self.shared.name.clone()
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(LoopbackServer::shutdown(*self))
    }
}

/// What a server's handle, its clients' links and its tasks share.
#[derive(Debug)]
pub(crate) struct ServerShared {
    pub(crate) name: String,
    pub(crate) service: Arc<dyn Service>,
    pub(crate) limits: Limits,
    shutdown: watch::Sender<bool>,
    /// Cloned into every task; taken (so no task can start) at shutdown.
    task_token: Mutex<Option<mpsc::Sender<()>>>,
}

impl ServerShared {
    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Runs `task` as one of the server's tasks; `task` must end by itself soon
    /// after the server shuts down.
    pub(crate) fn spawn<F>(&self, task: F) -> Result<(), TransportError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = lock(&self.task_token)
            .clone()
            .ok_or(TransportError::Closed { by: Side::Peer })?;
        let runtime = Handle::try_current().map_err(|_| TransportError::Local {
            reason: "the loopback transport needs a tokio runtime".to_owned(),
        })?;
        runtime.spawn(async move {
            let _token = token;
            task.await;
        });
        Ok(())
    }

    /// Runs `task` as one of the server's tasks, abandoning it when the server
    /// shuts down.
    pub(crate) fn spawn_until_shutdown<F>(&self, task: F) -> Result<(), TransportError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut shutdown = self.shutdown_signal();
        self.spawn(async move {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stopped| *stopped) => {}
                () = task => {}
            }
        })
    }
}
