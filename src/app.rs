//! app: wiring. `Application::build` opens the store and index, binds the listener (port 0 in
//! tests) and exposes the port; `run_until_stopped` also starts the scheduler and indexer.
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

/// Everything a request handler or job needs.
pub struct AppState {
    pub settings: Settings,
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
        let dicts = load_dictionaries(&settings)?;
        let store = Store::open_settings(&settings)
            .await
            .with_context(|| format!("opening the database in {}", settings.data_dir.display()))?;
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
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let state = AppState::open(settings, clock).await?;
        let server = crate::web::server(listener, state.clone())?;
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
        let indexer = crate::jobs::spawn_indexer(self.state.clone(), stop.clone());
        let mut scheduler = crate::jobs::start_scheduler(self.state.clone()).await?;
        let status_poller = crate::jobs::spawn_status_poller(self.state.clone(), stop.clone());
        let webhooks = crate::jobs::spawn_webhook_worker(self.state.clone(), stop.clone());
        let detector = crate::jobs::spawn_alert_detector(self.state.clone(), stop.clone());
        let result = self.server.await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.index_notify.notify_one();
        let _ = scheduler.shutdown().await;
        status_poller.abort();
        webhooks.abort();
        detector.abort();
        let _ = tokio::task::spawn_blocking(move || indexer.join()).await;
        self.state.store.close().await;
        Ok(result?)
    }
}
