//! [`Env`]: what every part of the coordinator works with and none of them owns — the apps
//! served, the login hook, the store, the clock, the settings and the fleet's leases. The
//! [`SessionManager`](crate::SessionManager) builds it once and lends it to its parts (the refresh
//! coordinator, logins, app tokens, session keys); each part keeps its own state to itself.

use std::future::Future;
use std::sync::Arc;

use wechat_oauth::clock::SharedClock;
use wechat_oauth::{AppId, Client};

use crate::config::SessionConfig;
use crate::hook::DynLoginHook;
use crate::lease::Leases;
use wechat_session_store::{SharedStore, StoreError};

pub(crate) struct Env<S> {
    /// The apps served; never empty, the first is the default app.
    pub(crate) clients: Vec<Client>,
    pub(crate) hook: Option<Arc<dyn DynLoginHook>>,
    pub(crate) store: S,
    pub(crate) clock: SharedClock,
    pub(crate) config: SessionConfig,
    /// The fleet-wide leases of this cache's flights.
    pub(crate) leases: Leases,
}

impl<S> Env<S> {
    /// The client of app `appid`, if it is served.
    pub(crate) fn client_for(&self, appid: &AppId) -> Option<&Client> {
        // A handful of apps at most: a scan beats hashing the AppID.
        self.clients.iter().find(|client| client.appid() == appid)
    }
}

impl<S: SharedStore> Env<S> {
    /// Runs `work` under the fleet-wide lease `name` (see [`Leases::under`]).
    pub(crate) async fn under_lease<T, E, EF>(
        &self,
        name: &str,
        work: impl Future<Output = T>,
        elsewhere: impl FnMut() -> E,
        gave_up: impl FnOnce() -> T,
        on_error: impl FnOnce(StoreError) -> EF,
    ) -> T
    where
        E: Future<Output = Option<T>>,
        EF: Future<Output = T>,
    {
        self.leases
            .under(&self.store, name, work, elsewhere, gave_up, on_error)
            .await
    }
}
