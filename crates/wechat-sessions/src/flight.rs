//! Single flight: however many callers ask for the same key at once, one piece of work runs
//! and all of them get its result.
//!
//! The work runs in its own tokio task, so a caller that gives up (a client disconnects) does not
//! cancel a refresh half-way and lose the refresh token WeChat sent back. The task removes its
//! entry only after the work has finished (and written its result wherever it writes), so a
//! caller arriving later either joins the flight or sees the written result. The removal is a
//! drop guard owned by the task: it also runs if the work panics or the task is cancelled (the
//! runtime shutting down), so a key is never left blocked by a flight that will not land.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

type Flight<V> = Shared<BoxFuture<'static, Option<V>>>;

/// Flights in progress, by key.
pub(crate) struct Flights<K, V: Clone> {
    running: Mutex<HashMap<K, Flight<V>>>,
    /// What the flights do, for the coalescing metric.
    kind: &'static str,
}

impl<K, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self::named("other")
    }
}

impl<K, V: Clone> Flights<K, V> {
    /// Flights of one kind (`session`, `login`, `app_token`).
    pub(crate) fn named(kind: &'static str) -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
            kind,
        }
    }
}

/// A flight's way down, owned by its task: removes the flight's entry when dropped — when the
/// task ends, however it ends — and only then lets go of the answer channel, so a caller woken
/// by the answer (or by its absence) never finds the finished flight still registered.
struct Landing<K: Hash + Eq, V: Clone> {
    flights: Arc<Flights<K, V>>,
    key: K,
    answer: Option<oneshot::Sender<V>>,
}

impl<K: Hash + Eq, V: Clone> Landing<K, V> {
    /// Normal end: deregister, then answer.
    fn land(mut self, value: V) {
        let answer = self.answer.take();
        drop(self);
        if let Some(answer) = answer {
            let _ = answer.send(value);
        }
    }
}

impl<K: Hash + Eq, V: Clone> Drop for Landing<K, V> {
    fn drop(&mut self) {
        self.flights
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        // `answer`, if still here (panic, cancellation), is dropped after this: callers get None.
    }
}

impl<K, V> Flights<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the flight for `key`, or starts `work` as a new one. `None` only if the work
    /// panicked or the runtime is shutting down; the next call for `key` then starts afresh.
    pub(crate) async fn run<F>(self: &Arc<Self>, key: K, work: impl FnOnce() -> F) -> Option<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (flight, start) = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            match running.get(&key) {
                Some(flight) => {
                    metrics::counter!(crate::metrics::FLIGHTS_COALESCED, "kind" => self.kind)
                        .increment(1);
                    (flight.clone(), None)
                }
                None => {
                    // Made before registering: if making it panics, nothing is left registered.
                    let work = work();
                    let (answer, answered) = oneshot::channel();
                    let flight = answered.map(Result::ok).boxed().shared();
                    running.insert(key.clone(), flight.clone());
                    (flight, Some((work, answer)))
                }
            }
        };
        // Spawned outside the lock: a task dropped at once (runtime shutting down) drops its
        // landing, which takes the lock.
        if let Some((work, answer)) = start {
            let landing = Landing {
                flights: Arc::clone(self),
                key,
                answer: Some(answer),
            };
            tokio::spawn(async move {
                let landing = landing;
                let value = work.await;
                landing.land(value);
            });
        }
        flight.await
    }

    /// How many flights are in progress.
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// How many callers wait on the flight for `key` (0 when none is in progress).
    #[cfg(test)]
    pub(crate) fn passengers(&self, key: &K) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // The registry holds one handle of the flight; every waiting caller holds another.
        running
            .get(key)
            .and_then(Shared::strong_count)
            .map_or(0, |handles| handles - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::{until, within};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<u8, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let joined = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let mut callers = Vec::new();
        for _ in 0..100 {
            let (flights, runs, gate) = (flights.clone(), runs.clone(), gate.clone());
            let joined = joined.clone();
            callers.push(tokio::spawn(async move {
                // Counted in the same poll that joins (or starts) the flight.
                joined.fetch_add(1, Ordering::SeqCst);
                flights
                    .run(7, || async move {
                        gate.notified().await;
                        runs.fetch_add(1, Ordering::SeqCst) + 41
                    })
                    .await
            }));
        }
        until("every caller joined", || {
            joined.load(Ordering::SeqCst) == 100 && flights.in_progress() == 1
        })
        .await;
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
        until("the flight took off", || flights.in_progress() == 1).await;
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        gate.notify_one();
        within("the work finished without its caller", finished.notified()).await;
        until("the flight landed", || flights.in_progress() == 0).await;
    }

    #[tokio::test]
    async fn a_panicking_flight_does_not_block_its_key() {
        let flights: Arc<Flights<u8, u32>> = Arc::default();
        let crashed = flights
            .run(3, || async {
                if flights_panic() {
                    panic!("the work fails");
                }
                0
            })
            .await;
        assert_eq!(crashed, None, "the panicked flight's callers get nothing");
        assert_eq!(flights.in_progress(), 0, "its entry is gone");
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let next = flights
            .run(3, || async move {
                counted.fetch_add(1, Ordering::SeqCst) as u32 + 7
            })
            .await;
        assert_eq!(next, Some(7), "the next caller starts fresh work");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    /// Always true; keeps the compiler from seeing the panic as unconditional.
    fn flights_panic() -> bool {
        std::hint::black_box(true)
    }
}
