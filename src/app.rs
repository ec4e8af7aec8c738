//! app: wiring. `Application::build` opens the store and index, binds the listener (port 0 in
//! tests) and exposes the port; `run_until_stopped` also starts the scheduler and indexer —
//! the parts the node's `Role` runs.
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::crawl::HttpClient;
use crate::dictionaries::Dictionaries;
use crate::pipeline::Pipeline;
use crate::search::SearchIndex;
use crate::store::Store;
use anyhow::Context;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::Notify;

/// What a `serve` process does. Nodes sharing one PostgreSQL database: any number of `web`
/// nodes and one `worker` (a single node is `all`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    /// Everything below in one process.
    #[default]
    All,
    /// HTTP (pages, API, status documents) with its own search index following the change
    /// sequence and the status poller; never crawls, detects or sends webhooks.
    Web,
    /// Crawling, retention, alert detection and webhook delivery, with its own index (saved
    /// searches are alert rules); HTTP only for /healthz, /readyz and /metrics.
    Worker,
}

impl Role {
    /// Runs the scheduled work that must happen once per deployment.
    pub fn runs_jobs(self) -> bool {
        self != Role::Web
    }

    /// Serves the pages and API.
    pub fn serves_web(self) -> bool {
        self != Role::Worker
    }
}

/// Everything a request handler or job needs.
pub struct AppState {
    pub settings: Settings,
    /// What this process does (`serve --role`); commands other than serve are `All`.
    pub role: Role,
    pub store: Store,
    pub pipeline: Pipeline,
    pub index: SearchIndex,
    pub dicts: Dictionaries,
    pub clock: SharedClock,
    pub http: HttpClient,
    /// Woken after every committed write so the indexer follows at once.
    pub index_notify: Notify,
    /// The public status pages, pre-rendered.
    pub status: crate::status::StatusSite,
    /// Set once any account exists; until then every page is open (a fresh install).
    pub accounts_exist: std::sync::atomic::AtomicBool,
    /// Outgoing webhooks on incident changes and alerts.
    pub notifier: crate::notify::Notifier,
}

/// Loads dictionaries from `dictionaries_dir` when configured, else the built-in ones.
pub fn load_dictionaries(settings: &Settings) -> anyhow::Result<Dictionaries> {
    Ok(match &settings.dictionaries_dir {
        Some(dir) => Dictionaries::load_dir(dir)?,
        None => Dictionaries::builtin(),
    })
}

impl AppState {
    /// Opens the database (seeding it on first start) and the analysis machinery; used by
    /// every command. The search index is opened too, but only `serve` writes it.
    pub async fn open(settings: Settings, clock: SharedClock) -> anyhow::Result<Arc<Self>> {
        Self::open_as(settings, clock, Role::All).await
    }

    pub async fn open_as(
        settings: Settings,
        clock: SharedClock,
        role: Role,
    ) -> anyhow::Result<Arc<Self>> {
        let dicts = load_dictionaries(&settings)?;
        let store =
            Store::open_settings(&settings)
                .await
                .with_context(|| match &settings.database {
                    crate::config::Database::Sqlite(path) => {
                        format!("opening the database {}", path.display())
                    }
                    crate::config::Database::Postgres(url) => format!("opening the database {url}"),
                })?;
        store.seed_once(&settings, clock.now()).await?;
        let pipeline = Pipeline::new(&dicts)?;
        let analyzer = pipeline.analyzer();
        let mut aliases = std::collections::HashMap::new();
        for s in &dicts.services {
            for a in &s.aliases {
                aliases.insert(analyzer.normalize_term(a)?, s.slug.clone());
            }
        }
        let index = SearchIndex::open(&settings.index_dir(), analyzer, aliases)?;
        index.set_time_budget(settings.limits.search_budget);
        let http = HttpClient::new(&settings.crawl)?;
        let settings_status = settings.status.clone();
        let settings_webhooks = settings.webhooks.clone();
        Ok(Arc::new(Self {
            settings,
            role,
            store,
            pipeline,
            index,
            dicts,
            clock,
            http,
            index_notify: Notify::new(),
            status: crate::status::StatusSite::new(settings_status, crate::web::css_name()),
            accounts_exist: std::sync::atomic::AtomicBool::new(false),
            notifier: crate::notify::Notifier::new(settings_webhooks),
        }))
    }
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: Arc<AppState>,
}

impl Application {
    pub async fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        Self::build_as(settings, clock, Role::All).await
    }

    /// Like `build`, for one role: a worker's listener answers health and metrics only.
    pub async fn build_as(
        settings: Settings,
        clock: SharedClock,
        role: Role,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let state = AppState::open_as(settings, clock, role).await?;
        let server = if role.serves_web() {
            crate::web::server(listener, state.clone())?
        } else {
            crate::web::health_server(listener, state.clone())?
        };
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until the server stops (Ctrl-C or the handle), with the indexer and scheduler.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let role = self.state.role;
        let indexer = crate::jobs::spawn_indexer(self.state.clone(), stop.clone());
        let mut tasks = Vec::new();
        if role.serves_web() {
            tasks.push(crate::jobs::spawn_status_poller(
                self.state.clone(),
                stop.clone(),
            ));
        }
        let mut scheduler = None;
        if role.runs_jobs() {
            scheduler = Some(crate::jobs::start_scheduler(self.state.clone()).await?);
            tasks.push(crate::jobs::spawn_webhook_worker(
                self.state.clone(),
                stop.clone(),
            ));
            tasks.push(crate::jobs::spawn_alert_detector(
                self.state.clone(),
                stop.clone(),
            ));
        }
        let result = self.server.await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.index_notify.notify_one();
        if let Some(mut scheduler) = scheduler {
            let _ = scheduler.shutdown().await;
        }
        for task in tasks {
            task.abort();
        }
        let _ = tokio::task::spawn_blocking(move || indexer.join()).await;
        self.state.store.close().await;
        Ok(result?)
    }
}
