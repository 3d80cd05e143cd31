//! How a shared store tells every instance that a session changed: [`Invalidations`] (the
//! store's side) and [`InvalidationSink`] (where the events go: a local cache in front of the
//! store, such as `wechat_sessions::CachedStore`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::record::{SessionId, UserId};
use crate::store::{SessionStore, StoreError};

/// Where a shared store's invalidations go (`wechat_sessions::CachedStore`'s local cache implements it).
pub trait InvalidationSink: Send + Sync + 'static {
    /// A session was written or ended on some instance: drop the local copy.
    fn invalidate(&self, sid: &SessionId);
    /// Every session of a user was ended on some instance (logout-all): drop their copies.
    fn invalidate_user(&self, user: &UserId);
    /// The stamp for a heartbeat to publish now: this subscriber's clock, in Unix ms.
    fn stamp(&self) -> u64;
    /// A heartbeat this subscriber published with `stamp` came back through the channel:
    /// everything published before it has been delivered.
    fn heard(&self, stamp: u64);
    /// The channel was interrupted (disconnected, reconnected): messages may have been lost.
    fn interrupted(&self);
}

/// A shared store that tells every instance when a session changes.
///
/// Contract: every write that changes or ends a session (compare-and-set, delete, per-user cap
/// eviction) publishes its id to every subscriber, and a logout-all its user, after the
/// sessions are ended; messages arrive in the order they were published. Every `heartbeat` the
/// store publishes a heartbeat carrying [`InvalidationSink::stamp`] on the same channel, and
/// hands it back to the sink that stamped it ([`InvalidationSink::heard`]) when it arrives.
pub trait Invalidations: SessionStore {
    /// Starts delivering events to `sink` and publishing its heartbeats every `heartbeat`.
    /// Fails if the channel cannot be opened now.
    fn subscribe(
        &self,
        sink: Arc<dyn InvalidationSink>,
        heartbeat: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
