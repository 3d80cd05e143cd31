//! Single flight: however many callers ask for the same key at once, one piece of work runs
//! and all of them get its result.
//!
//! The work runs in its own tokio task, so a caller that gives up (a client disconnects) does not
//! cancel a refresh half-way and lose the refresh token WeChat sent back. The task removes its
//! entry only after it has finished (and written its result wherever it writes), so a caller
//! arriving later either joins the flight or sees the written result.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type Flight<V> = Shared<BoxFuture<'static, Option<V>>>;

/// Flights in progress, by key.
pub(crate) struct Flights<K, V: Clone> {
    running: Mutex<HashMap<K, Flight<V>>>,
}

impl<K, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the flight for `key`, or starts `work` as a new one. `None` only if the task
    /// panicked or the runtime is shutting down.
    pub(crate) async fn run<F>(self: &Arc<Self>, key: K, work: impl FnOnce() -> F) -> Option<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            match running.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let work = work();
                    let flights = Arc::clone(self);
                    let done_key = key.clone();
                    let task = tokio::spawn(async move {
                        let value = work.await;
                        flights
                            .running
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&done_key);
                        value
                    });
                    let flight = task.map(Result::ok).boxed().shared();
                    running.insert(key, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// How many flights are in progress.
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<u8, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let mut callers = Vec::new();
        for _ in 0..100 {
            let (flights, runs, gate) = (flights.clone(), runs.clone(), gate.clone());
            callers.push(tokio::spawn(async move {
                flights
                    .run(7, || async move {
                        gate.notified().await;
                        runs.fetch_add(1, Ordering::SeqCst) + 41
                    })
                    .await
            }));
        }
        // Every caller has joined once the flight exists and all 100 tasks were polled.
        while flights.in_progress() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Some(41));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_progress(), 0);
    }

    #[tokio::test]
    async fn a_dropped_caller_does_not_cancel_the_work() {
        let flights: Arc<Flights<u8, ()>> = Arc::default();
        let (gate, finished) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let caller = {
            let (flights, gate, done) = (flights.clone(), gate.clone(), finished.clone());
            tokio::spawn(async move {
                flights
                    .run(1, || async move {
                        gate.notified().await;
                        done.notify_one();
                    })
                    .await
            })
        };
        while flights.in_progress() == 0 {
            tokio::task::yield_now().await;
        }
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        gate.notify_one();
        finished.notified().await;
        while flights.in_progress() > 0 {
            tokio::task::yield_now().await;
        }
    }
}
