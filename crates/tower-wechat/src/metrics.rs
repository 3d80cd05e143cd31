//! The metrics the layer records through the [`metrics`](https://docs.rs/metrics) facade (no
//! exporter is chosen for you). The cache, the client and the Redis store record their own:
//! see `wechat_sessions::metrics`, `wechat_oauth::metrics`, `wechat_redis_store::metrics`.

/// Counter: requests the layer refused or handed on without a user because their credentials
/// were refused or missing. Label: `code` ([`AuthError::metric_label`](crate::AuthError::metric_label):
/// `missing_token`, `invalid_token`, `token_expired`, `session_expired`, `reauth_required`,
/// `upstream_unavailable`, `store_unavailable`, ...).
pub const REJECTIONS: &str = "wechat_login_rejections_total";

#[cfg(feature = "prometheus")]
pub use prometheus::Prometheus;

#[cfg(feature = "prometheus")]
mod prometheus {
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

    /// Every crate's metrics in Prometheus' text format (feature `prometheus`): installs the
    /// process's `metrics` recorder and serves `GET /metrics`.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_wechat::metrics::Prometheus;
    ///
    /// // Before anything records (build the layer after it).
    /// let prometheus = Prometheus::install()?;
    /// let app = app.route("/metrics", prometheus.route());
    /// # Ok(()) }
    /// ```
    ///
    /// Put the route where only your monitoring reaches it: the counts are not secret (no
    /// user, session or token appears in them), but they describe your traffic.
    #[derive(Clone)]
    pub struct Prometheus {
        handle: PrometheusHandle,
        sessions_open: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
    }

    impl std::fmt::Debug for Prometheus {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Prometheus")
                .field("sessions_open", &self.sessions_open.is_some())
                .finish_non_exhaustive()
        }
    }

    impl Prometheus {
        /// Installs the Prometheus recorder as the process's `metrics` recorder. Once per
        /// process: a second call fails, as does one after another recorder was installed.
        pub fn install() -> Result<Self, BuildError> {
            let handle = PrometheusBuilder::new().install_recorder()?;
            Ok(Self {
                handle,
                sessions_open: None,
            })
        }

        /// Sets the `wechat_login_sessions_open` gauge from `count` at each scrape (the
        /// in-memory store counts cheaply: `store.session_count()`; a shared store has no
        /// cheap count, so leave it unset there).
        pub fn sessions_open(mut self, count: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
            self.sessions_open = Some(Arc::new(count));
            self
        }

        /// The metrics now, in Prometheus' text format.
        pub fn render(&self) -> String {
            if let Some(count) = &self.sessions_open {
                metrics::gauge!(wechat_sessions::metrics::SESSIONS_OPEN).set(count() as f64);
            }
            self.handle.render()
        }

        /// `GET` answering [`render`](Self::render) as `text/plain; version=0.0.4`.
        pub fn route<S: Clone + Send + Sync + 'static>(&self) -> axum::routing::MethodRouter<S> {
            let this = self.clone();
            axum::routing::get(move || async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    this.render(),
                )
                    .into_response()
            })
        }
    }
}
