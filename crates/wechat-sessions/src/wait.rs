//! Bounded waits for the crate's unit tests: a regression fails with a message instead of hanging.

use std::time::Duration;

/// `f`, or a failure naming `what` after 10 s.
pub(crate) async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("never happened: {what}"))
}

/// Yields until `done()` holds (bounded by [`within`]).
pub(crate) async fn until(what: &str, done: impl Fn() -> bool) {
    within(what, async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
}
