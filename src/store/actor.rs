//! The one owner of the database connection: a thread that runs store jobs in order. Async
//! workers send it closures and await the result, so SQLite sees a single writer.

use std::sync::mpsc;

use super::{Store, StoreError};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// A cloneable way to reach the store thread.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Job>,
}

impl StoreHandle {
    /// Moves `store` onto its own thread; the thread ends when every handle is dropped.
    pub fn spawn(mut store: Store) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("iamsweep-store".into())
            .spawn(move || {
                for job in rx {
                    job(&mut store);
                }
            })
            .expect("spawn store thread");
        Self { tx }
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
            .send(job)
            .map_err(|_| StoreError::NotFound("the store thread has stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError::NotFound("the store thread has stopped".into()))?
    }
}
