//! The composition root: builds [`AppState`] (declared in
//! [`crate::state`], below `http`) and serves the router on a listener.
//!
//! `main` (or a test) binds a listener, builds [`AppState`] and calls
//! [`serve`]; nothing here knows about fixed ports.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::assets::Assets;
use crate::auth::password::Hasher;
use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::{self, JwtKeys};
use crate::config::{Config, parse_origin};
use crate::store::SharedStore;

pub use crate::state::{AppInner, AppState};

impl AppState {
    /// Builds the state for a server reachable at `bound`. Opens nothing:
    /// the store is opened by the caller so errors surface before binding.
    pub async fn new(
        cfg: Config,
        store: SharedStore,
        bound: SocketAddr,
    ) -> anyhow::Result<AppState> {
        let jwt = match &cfg.auth.jwt_secret {
            Some(s) => JwtKeys::from_secret(s.expose().as_bytes()),
            None => JwtKeys::load_or_create(&cfg.data_dir)?,
        };
        let public_base = cfg.public_base(bound);
        let mut allowed_origins = vec![parse_origin(&public_base).unwrap_or_default()];
        allowed_origins.extend(cfg.cors_origins.iter().filter_map(|o| parse_origin(o)));
        let cluster = match store.cluster() {
            Some(shared) => Some(join_cluster(&cfg, shared).await?),
            None => None,
        };
        match &cluster {
            // Other instances may be writing answers right now: only those
            // of instances whose lease ran out are ended (here, and by the
            // reaper every few seconds).
            Some(c) => crate::chat::shared::reap(&*c.store, c.lease).await,
            None => {
                let recovered = store.recover_streaming().await?;
                if recovered > 0 {
                    tracing::warn!(
                        count = recovered,
                        "answers cut off by a crash were marked interrupted"
                    );
                }
            }
        }
        // Limits, quotas and prices change only in the config file: record
        // the settings in the audit log whenever they differ from last time.
        if let Err(e) = crate::limits::audit::record_if_changed(&store, &cfg).await {
            tracing::error!(error = %e, "cannot record the governance settings in the audit log");
        }
        let setup = crate::users::setup::SetupGate::new(&store, store.cluster()).await?;
        // Config `[[providers]]` first, then the environment, then what admins
        // stored; local servers are detected by the refresh loop in `serve`.
        let providers = crate::provider_admin::build_registry(&cfg, &store).await?;
        let search = crate::search::Search::open(&cfg.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot open the search index: {e}"))?;
        if let Some(c) = &cluster {
            // Each instance's own index follows the database's outbox.
            search.follow_shared(c.store.clone(), c.id);
        }
        let tls = crate::tls::Tls::from_config(&cfg, &store).await?;
        let limits = Arc::new(crate::limits::Limits::new(&cfg, cluster.as_deref()));
        let models = crate::model_settings::ModelSettings::load(&store, &limits.prices)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the model settings: {e}"))?;
        let throttle = LoginThrottle::new(&cfg, cluster.as_ref().map(|c| c.store.clone()))?;
        // On a database several instances share, so are the files' bytes.
        let blobs: Arc<dyn crate::store::blobs::BlobStore> = match store.shared_blobs() {
            Some(b) => {
                // Files this instance kept on its own disk before join the
                // shared store.
                match crate::store::blobs::adopt_local(&cfg.data_dir, &*b).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        files = n,
                        moved_aside = crate::store::blobs::ADOPTED_DIR,
                        "copied the data directory's files into the database"
                    ),
                    Err(e) => {
                        return Err(anyhow::anyhow!(
                            "cannot copy the data directory's files into the database: {e}"
                        ));
                    }
                }
                b
            }
            None => Arc::new(
                crate::store::blobs::LocalBlobs::open(&cfg.data_dir).map_err(|e| {
                    anyhow::anyhow!("cannot open the file store under the data directory: {e}")
                })?,
            ),
        };
        let files = Arc::new(crate::files::Files::new(store.clone(), blobs));
        let knowledge = crate::knowledge::Knowledge::new(
            store.clone(),
            search.clone(),
            providers.clone(),
            Arc::new(crate::knowledge::uploads::Uploads(files.clone())),
            cfg.embedding_model.clone(),
        );
        let mailer = match &cfg.smtp {
            Some(s) => Some(Arc::new(crate::mail::Mailer::new(s).map_err(|e| {
                anyhow::anyhow!("cannot set up mail from the [smtp] settings: {e}")
            })?)),
            None => None,
        };
        Ok(AppState(Arc::new(AppInner {
            sso: Arc::new(crate::sso::Sso::new(&cfg, &public_base)),
            mailer,
            two_factor_policy: Default::default(),
            files,
            imports: Arc::new(
                crate::transfer::jobs::Jobs::open(store.clone(), cluster.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot read the import jobs: {e}"))?,
            ),
            tls,
            models,
            limits,
            live: crate::ops::reload::LiveConfig::new(cfg.clone()),
            search,
            knowledge,
            providers,
            generations: crate::chat::generation::Manager::with_shared(
                cluster.clone().map(crate::chat::shared::SharedGens::new),
            ),
            cluster,
            throttle,
            hasher: Hasher::new(),
            jwt,
            setup,
            public_base,
            allowed_origins,
            assets: Assets::get(),
            store,
            cfg,
        })))
    }
}

/// Joins the other instances on the database: checks that this instance
/// has the keys they use (recording them when it is the first) and takes a
/// lease.
async fn join_cluster(
    cfg: &Config,
    shared: Arc<dyn crate::store::cluster::ClusterStore>,
) -> anyhow::Result<Arc<crate::cluster::Cluster>> {
    crate::store::ensure_data_dir(&cfg.data_dir)?;
    crate::cluster::check_keys(&*shared, &shared_keys(cfg)?).await?;
    let lease = Duration::from_secs(cfg.cluster_lease_secs);
    let c = crate::cluster::Cluster::join(shared, lease).await?;
    tracing::info!(instance = %c.id, lease_secs = lease.as_secs(), "joined the other instances on the database");
    Ok(c)
}

/// The keys every instance on one database must share: what signs access
/// tokens and device cookies, and what seals provider keys. The provider
/// key is created now rather than at its first use, so that every instance
/// starts with the one the first instance made.
fn shared_keys(cfg: &Config) -> anyhow::Result<Vec<crate::cluster::SharedKey>> {
    use crate::cluster::SharedKey;
    let dir = cfg.data_dir.display();
    let copy = |file: &str| {
        format!(
            "copy {file} from the data directory of an instance already running on this database into {dir}, then start again"
        )
    };
    let read = |file: &str, len: usize| {
        crate::keyfile::load_or_create(&cfg.data_dir.join(file), len)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cfg.data_dir.join(file).display()))
    };
    let mut keys = Vec::new();
    match &cfg.auth.jwt_secret {
        // The device key is derived from the secret: one check covers both.
        Some(s) => keys.push(SharedKey {
            name: "jwt",
            bytes: s.expose().as_bytes().to_vec(),
            remedy: "set auth.jwt_secret (CONFAB_JWT_SECRET) to the same value on every instance"
                .into(),
        }),
        None => {
            keys.push(SharedKey {
                name: "jwt",
                bytes: read(tokens::JWT_KEY_FILE, tokens::JWT_KEY_LEN)?,
                remedy: format!(
                    "{} (or set auth.jwt_secret to the same value on every instance)",
                    copy(tokens::JWT_KEY_FILE)
                ),
            });
            keys.push(SharedKey {
                name: "device",
                bytes: read(crate::auth::device::KEY_FILE, 32)?,
                remedy: copy(crate::auth::device::KEY_FILE),
            });
        }
    }
    keys.push(SharedKey {
        name: "provider",
        bytes: read(crate::providers::secrets::KEY_FILE, 32)?,
        remedy: copy(crate::providers::secrets::KEY_FILE),
    });
    Ok(keys)
}

/// Serves HTTP on `listener` until `shutdown` resolves, then drains
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let accept = crate::server::TcpAccept::new(listener, crate::server::ConnCap::new(&state.cfg));
    serve_on(accept, state, shutdown, None).await
}

/// Like [`serve`], over TLS: [`serve_listeners`] starts the certificate
/// upkeep and calls this. Responses carry HSTS while a CA-issued
/// certificate is in use.
pub async fn serve_tls(
    listener: crate::tls::TlsListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let over_tls = crate::http::OverTls(listener.tls().clone());
    serve_on(listener, state, shutdown, Some(over_tls)).await
}

/// Serves the app on `listeners` until `shutdown`: plain HTTP through
/// [`serve`], or HTTPS through [`serve_tls`] with
/// the certificate upkeep (file watch or ACME) and the plain-HTTP listener
/// running beside it.
pub async fn serve_listeners(
    listeners: crate::tls::Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = state.tls.clone() else {
        return serve(listeners.app, state, shutdown).await;
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let https_port = listeners.app.local_addr()?.port();
    // One cap for both ports: a flood on :80 counts against :443 too.
    let cap = crate::server::ConnCap::new(&state.cfg);
    let timeouts = crate::server::Timeouts::from_config(&state.cfg.http);
    let mut tasks = vec![tokio::spawn(tls.clone().run(
        state.live.subscribe(),
        Arc::downgrade(&state.store),
        cancel.child_token(),
    ))];
    if let Some(http) = listeners.http {
        tracing::info!(
            addr = %http.local_addr()?,
            "plain HTTP answers ACME challenges and redirects to https"
        );
        tasks.push(tokio::spawn(crate::tls::redirect::serve(
            crate::server::TcpAccept::new(http, cap.clone()),
            timeouts,
            tls.clone(),
            https_port,
            cancel.child_token(),
        )));
    }
    let handshake = Duration::from_secs(state.cfg.http.tls_handshake_timeout_secs);
    let listener = crate::tls::TlsListener::new(listeners.app, tls, cap, handshake)?;
    let stop = cancel.clone();
    let result = serve_tls(listener, state, async move {
        shutdown.await;
        stop.cancel();
    })
    .await;
    cancel.cancel();
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
    result
}

async fn serve_on<A: crate::server::Accept>(
    accept: A,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    over_tls: Option<crate::http::OverTls>,
) -> std::io::Result<()> {
    let maintenance = tokio::spawn(maintenance(state.clone()));
    // Several instances: the lease, and publishing, following and reaping
    // answers across instances.
    let mut cluster_tasks = Vec::new();
    if let (Some(c), Some(shared)) = (&state.cluster, &state.generations.shared) {
        cluster_tasks.push(c.spawn_upkeep());
        cluster_tasks.extend(shared.spawn(&state.generations));
    }
    let cluster = state.cluster.clone();
    let imports = state.imports.clone();
    let gens_after = state.generations.clone();
    // Model lists and reachability at once, then every minute (and local
    // Ollama / LM Studio found when detection is on).
    let provider_refresh = state.providers.spawn_refresh_loop(
        crate::provider_admin::REFRESH_EVERY,
        state
            .cfg
            .detect_local_providers
            .then(crate::providers::LocalProbe::default),
    );
    // On the signal, running answers get the grace period to finish and are
    // then stopped and stored as interrupted; only then do their streams
    // end, so the HTTP drain below cannot wait on them forever.
    // On the signal the listener closes at once (no new connections) while
    // running answers get the grace period in the background; their streams
    // end when they finish or are stopped and stored as interrupted, which is
    // what lets the HTTP drain below complete. Answers whose client has gone
    // hold no connection, so the drain task is awaited after the server.
    let gens = state.generations.clone();
    let grace = Duration::from_secs(state.cfg.shutdown_grace_secs);
    let drain: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let drain_slot = drain.clone();
    let shutdown = async move {
        shutdown.await;
        let running = gens.running();
        if running > 0 {
            tracing::info!(
                running,
                grace_secs = grace.as_secs(),
                "waiting for running answers"
            );
        }
        let task = tokio::spawn(async move { gens.shutdown(grace).await });
        *drain_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    };
    let indexer = tokio::spawn(
        state
            .search
            .clone()
            .run_indexer(Arc::downgrade(&state.store)),
    );
    let search = state.search.clone();
    // Connection caps and the header/body/idle deadlines: `server`.
    let timeouts = crate::server::Timeouts::from_config(&state.cfg.http);
    let mut router = crate::http::router(state);
    if let Some(t) = over_tls {
        router = router.layer(axum::Extension(t));
    }
    crate::server::run(accept, router, timeouts, shutdown).await;
    let pending = drain.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(task) = pending {
        let _ = task.await;
    }
    maintenance.abort();
    imports.stop();
    // Usage, audit entries and last-used times written after their request.
    let left = crate::store::background::drain(grace).await;
    if left > 0 {
        tracing::warn!(left, "stopped before every background store write finished");
    }
    if let Some(c) = cluster {
        // The last events of answers that ended during the drain.
        gens_after.publish(None).await;
        for t in cluster_tasks {
            t.abort();
        }
        c.leave().await;
    }
    indexer.abort();
    // Release the index writer (and its lock) so the data dir can be reopened.
    tokio::task::spawn_blocking(move || search.shutdown())
        .await
        .ok();
    provider_refresh.abort();
    Ok(())
}

/// Periodic housekeeping: expired sessions and limiter state.
async fn maintenance(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        state.throttle.prune();
        state.limits.prune();
        if let Some(c) = &state.cluster
            && let Err(e) = c.store.rate_prune().await
        {
            tracing::warn!(error = %e, "pruning the shared rate limits failed");
        }
        let idle = state.cfg.auth.session_idle_hours as i64 * 3600;
        let now = crate::clock::now();
        let pruned = match state.store.prune_sessions(now, idle).await {
            Ok(n) => state.store.prune_tokens(now).await.map(|m| n + m),
            Err(e) => Err(e),
        };
        let pruned = match pruned {
            Ok(n) => state.store.prune_one_time(now).await.map(|m| n + m),
            Err(e) => Err(e),
        };
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned expired sessions, tokens and invites"),
            Err(e) => tracing::warn!(error = %e, "session pruning failed"),
        }
        match state.files.collect_garbage().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed blobs no file references"),
            Err(e) => tracing::warn!(error = %e, "blob garbage collection failed"),
        }
    }
}
