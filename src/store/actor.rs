//! The one owner of the database connection: a thread that runs store jobs in order. Async
//! workers send it closures and await the result, so SQLite sees a single writer. When the last
//! handle goes, the thread ends and the connection is closed before the drop returns (so the run
//! lock, released after it, never outlives the connection's own locks).

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use super::{Store, StoreError};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// A cloneable way to reach the store thread.
pub struct StoreHandle {
    tx: Option<mpsc::Sender<Job>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Clone for StoreHandle {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            thread: self.thread.clone(),
        }
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        drop(self.tx.take());
        // The last handle: wait for the thread to close the connection.
        if Arc::strong_count(&self.thread) == 1
            && let Some(thread) = self.thread.lock().expect("store thread").take()
        {
            let _ = thread.join();
        }
    }
}

impl StoreHandle {
    /// Moves `store` onto its own thread; the thread ends when every handle is dropped.
    pub fn spawn(mut store: Store) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("iamsweep-store".into())
            .spawn(move || {
                for job in rx {
                    job(&mut store);
                }
            })
            .expect("spawn store thread");
        Self {
            tx: Some(tx),
            thread: Arc::new(Mutex::new(Some(thread))),
        }
    }

    /// Runs `f` on the store thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = done.send(f(store));
        });
        self.tx
            .as_ref()
            .ok_or_else(|| StoreError::NotFound("the store thread has stopped".into()))?
            .send(job)
            .map_err(|_| StoreError::NotFound("the store thread has stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError::NotFound("the store thread has stopped".into()))?
    }
}
