//! Starting and stopping the collector.

use crate::config::{Config, ServerConfig, StoreUrl};
use crate::ingest::Ingest;
use crate::routes::{self, Route};
use crate::security::bulletins::BulletinCache;
use crate::{AppState, Clock, admin, guards, host, http, keys, mobile, ops, security, sentry, ui};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter};
use beacon_store::Store;
use beacon_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n{0}")]
    Config(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] beacon_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot load tls certificate or key: {0}")]
    Tls(std::io::Error),
}

/// Opens the configured store (creating the data directory for SQLite) and migrates its schema.
///
/// SQLite: a new directory is made 0700 and a new database file 0600 (SQLite gives its `-wal` and
/// `-shm` files the database's mode); existing ones keep their modes, with a warning when others
/// may read them.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match config.store_url().map_err(StartError::Config)? {
        StoreUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                host::create_private_dir(dir).map_err(|source| StartError::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            host::create_private_file(&path).map_err(|source| StartError::DataDir {
                path: path.display().to_string(),
                source,
            })?;
            let store = SqliteStore::open(&path)?;
            for warning in host::loose_permissions(&path) {
                tracing::warn!("{warning}");
            }
            Ok(Arc::new(store))
        }
        StoreUrl::Postgres(url) => Ok(Arc::new(
            beacon_store_postgres::PgStore::connect(&url).await?,
        )),
    }
}

/// One entry of [`routes::ALL`] with its handler.
pub struct Mount {
    pub route: &'static Route,
    handler: MethodRouter<AppState>,
}

fn mount<H, T>(route: &'static Route, handler: H) -> Mount
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(route.method.http()).expect("a method axum can route");
    Mount {
        route,
        handler: axum::routing::on(filter, handler),
    }
}

/// Every route with its handler; a test checks that this is [`routes::ALL`], each once.
pub fn mounts() -> Vec<Mount> {
    use crate::routes::*;
    vec![
        mount(&SECURITY_CHECK, security::check),
        mount(&BULLETIN_PAGE, security::bulletin_body),
        mount(&SENTRY_ENVELOPE, sentry::envelope),
        mount(&SENTRY_STORE, sentry::store),
        mount(&MOBILE_METRICS, mobile::metrics),
        mount(&HEALTHZ, ops::healthz),
        mount(&READYZ, ops::readyz),
        mount(&METRICS, ops::metrics),
        mount(&ADMIN_OPENAPI, admin::openapi),
        mount(&ADMIN_DEAD_LETTERS, admin::dead_letters),
        mount(&FORGET, crate::forget::forget),
        mount(&FORGET_LOG, crate::forget::log),
        mount(&AGENT_FORGET, crate::forget::agent_forget),
        mount(&BULLETINS_LIST, security::admin::list_bulletins),
        mount(&BULLETINS_ADD, security::admin::add_bulletin),
        mount(&BULLETINS_SHOW, security::admin::show_bulletin),
        mount(&BULLETINS_RETRACT, security::admin::retract_bulletin),
        mount(&REPORT_FLEET, security::admin::fleet),
        mount(&REPORT_GROWTH, security::admin::growth),
        mount(&REPORT_EXPOSURE, security::admin::exposure),
        mount(&REPORT_RELEASES, security::admin::releases),
        mount(&PROJECTS_LIST, sentry::admin::list_projects),
        mount(&PROJECTS_CREATE, sentry::admin::create_project),
        mount(&KEY_UPDATE, sentry::admin::update_key),
        mount(&ISSUES_LIST, sentry::admin::list_issues),
        mount(&ISSUES_SHOW, sentry::admin::show_issue),
        mount(&APIKEYS_LIST, mobile::admin::list_api_keys),
        mount(&APIKEYS_CREATE, mobile::admin::create_api_key),
        mount(&APIKEYS_REVOKE, mobile::admin::revoke_api_key),
        mount(&PERF_PERCENTILES, mobile::admin::percentiles),
        mount(&PERF_HISTOGRAM, mobile::admin::histogram),
        mount(&PERF_REGRESSIONS, mobile::admin::regressions),
        mount(&UI_ROOT, ui::root),
        mount(&UI_STATIC, ui::asset),
        mount(&UI_LOGIN_FORM, ui::login_form),
        mount(&UI_LOGIN, ui::login),
        mount(&UI_LOGIN_LINK, ui::login_link),
        mount(&UI_LOGOUT, ui::logout),
        mount(&UI_OVERVIEW, ui::pages::overview),
        mount(&UI_FLEET, ui::pages::fleet),
        mount(&UI_GROWTH, ui::pages::growth),
        mount(&UI_BULLETINS, ui::bulletins::list),
        mount(&UI_BULLETINS_PUBLISH, ui::bulletins::publish),
        mount(&UI_BULLETIN, ui::bulletins::show),
        mount(&UI_BULLETIN_RETRACT, ui::bulletins::retract),
        mount(&UI_ISSUES, ui::issues::list),
        mount(&UI_ISSUE, ui::issues::show),
        mount(&UI_RELEASES, ui::perf::releases),
        mount(&UI_PERF, ui::perf::perf),
        mount(&UI_REGRESSIONS, ui::perf::regressions),
        mount(&UI_SETTINGS, ui::settings::show),
        mount(&UI_TOKEN_CREATE, ui::settings::token_create),
        mount(&UI_TOKEN_REVOKE, ui::settings::token_revoke),
        mount(&UI_APIKEY_CREATE, ui::settings::apikey_create),
        mount(&UI_APIKEY_REVOKE, ui::settings::apikey_revoke),
        mount(&UI_PROJECT_CREATE, ui::settings::project_create),
        mount(&UI_KEY_UPDATE, ui::settings::key_update),
        // Retention.
        mount(&RETENTION_STATUS, crate::retention::status),
        mount(&RETENTION_APPLY, crate::retention::apply_now),
        // Alerts.
        mount(&ALERTS_LIST, crate::alerts::list),
        mount(&ALERTS_CREATE, crate::alerts::create),
        mount(&ALERTS_HISTORY, crate::alerts::history),
        mount(&ALERTS_SHOW, crate::alerts::show),
        mount(&ALERTS_REMOVE, crate::alerts::remove),
        mount(&ALERTS_TEST, crate::alerts::test),
        mount(&UI_ALERT_CREATE, ui::settings::alert_create),
        mount(&UI_ALERT_REMOVE, ui::settings::alert_remove),
        mount(&UI_ALERT_TEST, ui::settings::alert_test),
    ]
}

/// The whole HTTP surface, built from [`mounts`]: admin routes nested under
/// [`routes::ADMIN_PREFIX`] behind the token check, dashboard pages behind the session check (and
/// compressed), every other route with its own body limit.
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new();
    let mut admin_routes = Router::new();
    let mut ui_routes = Router::new();
    // A path given twice merges its methods.
    for Mount { route, handler } in mounts() {
        match route.admin_path() {
            Some(path) => admin_routes = admin_routes.route(path, handler),
            None if route.access == routes::Access::Session => {
                ui_routes = ui_routes.route(route.path, handler);
            }
            None if route.path.starts_with("/ui/") => {
                routes = routes.route(
                    route.path,
                    handler.layer(tower_http::compression::CompressionLayer::new()),
                );
            }
            None => {
                let handler = match route.body_limit {
                    Some(limit) => handler.layer(DefaultBodyLimit::max(limit)),
                    None => handler,
                };
                routes = routes.route(route.path, handler);
            }
        }
    }
    let ui_routes = ui::protect(ui_routes, state.clone())
        .route_layer(tower_http::compression::CompressionLayer::new());
    let routes = routes
        .merge(ui_routes)
        .nest(
            routes::ADMIN_PREFIX,
            admin::protect(admin_routes, state.clone()),
        )
        .route_layer(axum::middleware::from_fn(guards::declared_length))
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(state.config.server.body_timeout_secs),
            guards::body_deadline,
        ));
    crate::error::with_json_errors(routes)
        .layer(axum::middleware::from_fn(ops::track_latency))
        .with_state(state)
}

/// A collector that is serving.
pub struct RunningCollector {
    addr: SocketAddr,
    tls: bool,
    server: http::Server,
    writer: JoinHandle<()>,
    refresher: JoinHandle<()>,
    compactor: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    retention: JoinHandle<()>,
    alerts: JoinHandle<()>,
    alert_rounds: Arc<std::sync::atomic::AtomicU64>,
    grace: Duration,
    /// The admin token created at this start, when the store had none and none was configured.
    /// Shown once; only its hash is stored.
    pub initial_token: Option<String>,
    pub store: Arc<dyn Store>,
}

impl RunningCollector {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Rounds of the alert job completed (evaluation, then delivery): tests wait for rounds.
    pub fn alert_rounds(&self) -> u64 {
        self.alert_rounds.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting connections, lets in-flight requests finish (up to the grace period), then
    /// commits everything queued and stops the writer.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.server.shutdown();
        self.wait().await
    }

    /// Waits until the server stops (after [`shutdown`](Self::shutdown) or a fatal error).
    pub async fn wait(self) -> std::io::Result<()> {
        let served = self.server.wait().await;
        self.refresher.abort();
        self.compactor.abort();
        self.maintenance.abort();
        self.retention.abort();
        self.alerts.abort();
        // Every request handler has returned and dropped its ingest handle; the writer drains and stops.
        if tokio::time::timeout(self.grace, self.writer).await.is_err() {
            tracing::error!("writer did not finish within the grace period");
        }
        tracing::info!("collector stopped");
        served
    }
}

/// Starts a collector: opens the store, makes the first admin token if needed, binds and serves.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<RunningCollector, StartError> {
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(StartError::Config(problems.join("\n")));
    }
    crate::metrics::handle();
    let open_files = host::raise_open_files_limit();
    let store = open_store(&config).await?;
    let initial_token = bootstrap_token(&*store, &config, &*clock).await?;

    let device_hasher = keys::DeviceHasher::load(&*store).await?;
    let bulletins = Arc::new(BulletinCache::default());
    bulletins.refresh(&*store).await?;
    let (ingest, writer) = Ingest::start(
        store.clone(),
        config.ingest.batch_max,
        config.ingest.queue,
        config.deadletters.max_per_channel,
    );
    let refresher = tokio::spawn(refresh_bulletins(
        store.clone(),
        bulletins.clone(),
        Duration::from_secs(config.ingest.bulletin_refresh_secs),
    ));
    let compactor = tokio::spawn(compact_perf(
        store.clone(),
        Duration::from_secs(config.ingest.perf_compact_secs),
    ));
    let maintenance = tokio::spawn(maintain(store.clone(), MAINTENANCE_EVERY));
    let retention = tokio::spawn(crate::retention::job(
        store.clone(),
        clock.clone(),
        config.retention.policy(),
        Duration::from_secs(config.retention.interval_secs),
    ));
    let sender = crate::alerts::Sender::new(&config.alerts)
        .map_err(|e| StartError::Config(format!("alerts: cannot build the http client: {e}")))?;
    let alert_config = config.clone();
    let alert_rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let alerts = tokio::spawn(crate::alerts::job(
        store.clone(),
        clock.clone(),
        sender.clone(),
        move |now| crate::alerts::context(&alert_config, now),
        Duration::from_secs(config.alerts.interval_secs),
        alert_rounds.clone(),
    ));
    let config = Arc::new(config);
    let state = AppState::new(crate::Shared {
        store: store.clone(),
        ingest,
        bulletins,
        clock,
        config: config.clone(),
        keys: Default::default(),
        limiter: Default::default(),
        ui_logins: ui::session::LoginLimiter::new(
            u32::try_from(config.ui.login_attempts_per_minute).unwrap_or(u32::MAX),
        ),
        api_keys: Default::default(),
        device_hasher,
        alerts: sender,
    });
    let app = router(state);

    let addr_text = config.server.listen.clone();
    let listener = std::net::TcpListener::bind(&addr_text)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| StartError::Listen {
            addr: addr_text.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: addr_text,
        source,
    })?;
    let acceptor = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(http::tls_acceptor(cert, key).map_err(StartError::Tls)?),
        _ => None,
    };
    let tls = acceptor.is_some();
    if host::exposed_without_tls(addr, tls) {
        tracing::warn!(
            %addr,
            "listening beyond loopback without TLS: admin tokens and client keys cross the network \
             readable; set [tls] cert and key, or listen on 127.0.0.1 behind a TLS-terminating proxy"
        );
    }
    let server = http::Server::spawn(
        listener,
        acceptor,
        app,
        server_limits(&config.server, open_files.after),
        Duration::from_secs(config.server.shutdown_grace_secs),
    );
    Ok(RunningCollector {
        addr,
        tls,
        server,
        writer,
        refresher,
        compactor,
        maintenance,
        retention,
        alerts,
        alert_rounds,
        grace: Duration::from_secs(config.server.shutdown_grace_secs),
        initial_token,
        store,
    })
}

/// The `[server]` limits, with the connection cap kept within the open-files limit.
fn server_limits(c: &ServerConfig, open_files: u64) -> http::Limits {
    let (max_connections, lowered) = host::connection_cap(c.max_connections, open_files);
    if lowered {
        tracing::warn!(
            configured = c.max_connections,
            max_connections,
            open_files,
            "server.max_connections lowered to stay within the open-files limit; raise the hard \
             limit (systemd: LimitNOFILE=) to allow more"
        );
    } else {
        tracing::info!(max_connections, open_files, "connection cap");
    }
    http::Limits {
        header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(c.idle_timeout_secs),
        write_timeout: Duration::from_secs(c.write_timeout_secs),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        http2_max_streams: u32::try_from(c.http2_max_streams).unwrap_or(u32::MAX),
    }
}

/// When the store has no admin token: store the configured one, or make one to show once.
async fn bootstrap_token(
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
) -> Result<Option<String>, StartError> {
    if store.admin_token_count().await? > 0 {
        return Ok(None);
    }
    match &config.admin.token {
        Some(token) => {
            let stored = store
                .add_admin_token(
                    &crate::keys::hash(token),
                    "initial (configured)",
                    clock.now(),
                )
                .await;
            match stored {
                // Another collector sharing the database stored the same token first.
                Ok(()) | Err(beacon_store::StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!("stored the configured initial admin token");
            Ok(None)
        }
        None => {
            let token = crate::keys::generate_token();
            store
                .add_admin_token(&crate::keys::hash(&token), "initial", clock.now())
                .await?;
            Ok(Some(token))
        }
    }
}

async fn refresh_bulletins(store: Arc<dyn Store>, cache: Arc<BulletinCache>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = cache.refresh(&*store).await {
            tracing::warn!(error = %e, "bulletin refresh failed");
        }
    }
}

/// Merges mobile sketch deltas in the background, so reports read about one row per group.
async fn compact_perf(store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.compact_perf().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deltas = n, "sketch deltas compacted"),
            Err(e) => tracing::warn!(error = %e, "sketch compaction failed; retrying on schedule"),
        }
    }
}

/// How often the store's housekeeping runs ([`Store::maintain`]); the first run is at start.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(300);

/// The store's housekeeping in the background (PostgreSQL with autovacuum off: vacuum and analyse
/// the tables updated in place).
async fn maintain(store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        match store.maintain().await {
            Ok(true) => tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "vacuumed and analysed the tables updated in place (autovacuum is off)"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "store maintenance failed; retrying on schedule"),
        }
    }
}

#[cfg(test)]
mod route_table_tests {
    use super::*;

    #[test]
    fn every_route_of_the_table_is_mounted_once() {
        let mounted: Vec<&str> = mounts().iter().map(|m| m.route.name).collect();
        let table: Vec<&str> = routes::ALL.iter().map(|r| r.name).collect();
        let mut sorted = mounted.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            mounted.len(),
            "a route is mounted twice: {mounted:?}"
        );
        for name in &table {
            assert!(
                mounted.contains(name),
                "{name} is in routes::ALL but has no handler"
            );
        }
        for name in &mounted {
            assert!(
                table.contains(name),
                "{name} is mounted but not in routes::ALL"
            );
        }
    }
}
