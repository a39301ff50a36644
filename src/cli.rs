//! Command line: `confab serve`, user and invite management, config
//! helpers, healthcheck and version.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, DEFAULT_CONFIG, Overrides, StoreChoice};
use crate::store::{Role, SharedStore, User, UserStatus};
use crate::users::invites::{Invites, invite_url};
use crate::users::{Actor, NewUser, UserChange, UserError, Users};

#[derive(Parser, Debug)]
#[command(name = "confab", version = crate::VERSION, about = "Self-hosted AI chat appliance in one binary")]
pub struct Cli {
    /// Data directory (database, keys, search index). Default ./confab-data.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file. Default /etc/confab/confab.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format: auto (pretty on a terminal, JSON otherwise), pretty, json.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up; boxing the serve flags buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage users (the server must be stopped: the data directory is exclusive).
    #[command(subcommand)]
    User(UserCmd),
    /// Manage invite codes (the server must be stopped).
    #[command(subcommand)]
    Invite(InviteCmd),
    /// Rebuild the search index from the database (the server must be stopped).
    Reindex,
    /// Move the data between stores (see docs/OPERATIONS.md, "PostgreSQL").
    #[command(subcommand)]
    Store(StoreCmd),
    /// Print the commented example configuration.
    DefaultConfig,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Ask a running server whether it is healthy (exit 0) or not (exit 1).
    Healthcheck {
        /// Base URL of the server; default derived from the configured listen address.
        #[arg(long)]
        url: Option<String>,
    },
    /// Back up the database and key files to FILE: directly from a stopped
    /// data directory, or through the running server (needs an admin API key).
    Backup {
        /// The backup file to create (must not exist). Default
        /// ./confab-backup-<time>.redb.
        file: Option<PathBuf>,
        /// URL of the running server; default derived from the configured
        /// listen address.
        #[arg(long)]
        url: Option<String>,
        /// An API key with the admin scope, used when the server is running.
        #[arg(long, env = "CONFAB_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// Restore a backup into the data directory (the server must be stopped);
    /// the current database and keys are kept aside as *.pre-restore-<time>.
    Restore {
        file: PathBuf,
        /// Skip rebuilding the search index now (the server rebuilds it at
        /// its next start, in the background).
        #[arg(long)]
        no_reindex: bool,
    },
    /// Print version information.
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 or 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Public URL people use to reach this server.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Registration mode: open, invite or closed.
    #[arg(long, value_name = "MODE")]
    pub registration: Option<String>,
    /// Also serve /metrics (only) on this address, e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Break glass: accept confab passwords at sign-in for this run even
    /// when `auth.local_passwords = false` (the single sign-on provider is
    /// down). Set a password first with `confab user passwd NAME`.
    #[arg(long)]
    pub allow_local_passwords: bool,
    #[command(flatten)]
    pub tls: crate::config::TlsFlags,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Admin,
    User,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::User => Role::User,
        }
    }
}

#[derive(Args, Debug)]
pub struct PasswordInput {
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user (with --admin, an administrator; this also completes setup).
    Add {
        username: String,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// List users.
    List,
    /// Set a user's password (signs them out everywhere).
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Disable a user and sign them out.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Change a user's role.
    SetRole { username: String, role: RoleArg },
    /// Print a one-time link that sets a new password for the user (valid
    /// 24 hours; using it signs them out everywhere).
    ResetLink { username: String },
    /// Turn a user's two-factor sign-in off (lost phone and recovery codes).
    ResetTwoFactor { username: String },
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy a stopped redb data directory into an empty PostgreSQL database,
    /// then verify row counts and a checksum per table. The data directory
    /// is only read: pointing the configuration back at it undoes the move.
    Copy {
        /// The data directory holding confab.redb (its server stopped).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL URL to copy into; default the configured `store`
        /// (CONFAB_STORE or CONFAB_STORE_FILE keep the password off the
        /// command line).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum InviteCmd {
    /// Create an invite code and print its registration link.
    Create {
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long, default_value_t = 168)]
        expires_in_hours: u32,
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
    },
    /// List invites that can still be used.
    List,
    /// Revoke an invite code.
    Revoke { code: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("confab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn overrides(cli: &Cli, serve: Option<&ServeArgs>) -> Overrides {
    Overrides {
        data_dir: cli.data_dir.clone(),
        listen: serve.and_then(|s| s.listen.clone()),
        public_url: serve.and_then(|s| s.public_url.clone()),
        log_format: cli.log_format.clone(),
        registration: serve.and_then(|s| s.registration.clone()),
        metrics_listen: serve.and_then(|s| s.metrics_listen.clone()),
        local_passwords: serve.and_then(|s| s.allow_local_passwords.then_some(true)),
        tls: serve.map(|s| s.tls.clone()).unwrap_or_default(),
    }
}

fn load_config(cli: &Cli, serve: Option<&ServeArgs>) -> anyhow::Result<(Config, Vec<String>)> {
    Ok(Config::load(cli.config.as_deref(), &overrides(cli, serve))?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Version { json } => {
            if *json {
                println!("{}", crate::ops::version::json());
            } else {
                print!("{}", crate::ops::version::long());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { file, url, api_key } => {
            let (cfg, _) = load_config(&cli, None)?;
            refuse_on_postgres(&cfg, "backup")?;
            let base = url.clone().unwrap_or_else(|| cfg.public_base(cfg.listen));
            let dest = file
                .clone()
                .unwrap_or_else(|| crate::ops::backup::default_file_name().into());
            runtime()?.block_on(backup(&cfg, &dest, &base, api_key.as_deref()))
        }
        Command::Restore { file, no_reindex } => {
            let (cfg, _) = load_config(&cli, None)?;
            refuse_on_postgres(&cfg, "restore")?;
            restore(&cfg, file, !*no_reindex)
        }
        Command::CheckConfig => {
            let (cfg, warnings) = load_config(&cli, None)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let source = crate::config::config_path(cli.config.as_deref())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into());
            println!(
                "configuration OK ({source}): listen {}, data dir {}, store {}, registration {}",
                cfg.listen,
                cfg.data_dir.display(),
                store_description(&cfg),
                format!("{:?}", cfg.registration).to_lowercase()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { url } => {
            let (cfg, _) = load_config(&cli, None)?;
            let base = url.clone().unwrap_or_else(|| {
                crate::tls::local_base(&cfg).unwrap_or_else(|| cfg.public_base(cfg.listen))
            });
            runtime()?.block_on(healthcheck(&base))
        }
        Command::Serve(args) => {
            let (cfg, warnings) = load_config(&cli, Some(args))?;
            crate::logging::init(cfg.log_format, &cfg.log_level);
            for w in warnings {
                tracing::warn!("{w}");
            }
            // SIGHUP re-reads every layer with the same file and flags.
            let (path, flags) = (cli.config.clone(), overrides(&cli, Some(args)));
            let reload = move || Config::load(path.as_deref(), &flags).map(|(c, _)| c);
            runtime()?.block_on(serve_main(cfg, reload))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => {
            let (cfg, _) = load_config(&cli, None)?;
            let rt = runtime()?;
            let store = rt.block_on(open_store(&cfg))?;
            rt.block_on(user_cmd(&store, &cfg, cmd))
        }
        Command::Reindex => {
            let (cfg, _) = load_config(&cli, None)?;
            let rt = runtime()?;
            let store = rt.block_on(open_store(&cfg))?;
            rt.block_on(reindex(&store, &cfg))
        }
        Command::Store(StoreCmd::Copy { from, to }) => {
            let (mut cfg, _) = load_config(&cli, None)?;
            if let Some(url) = to {
                cfg.store = Some(crate::config::StoreUrl(url.clone()));
            }
            runtime()?.block_on(store_copy(&cfg, from))
        }
        Command::Invite(cmd) => {
            let (cfg, _) = load_config(&cli, None)?;
            let rt = runtime()?;
            let store = rt.block_on(open_store(&cfg))?;
            rt.block_on(invite_cmd(&store, &cfg, cmd))
        }
    }
}

async fn open_store(cfg: &Config) -> anyhow::Result<SharedStore> {
    crate::store::open(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// "redb file ./confab-data/confab.redb" or "PostgreSQL database … on …".
fn store_description(cfg: &Config) -> String {
    match cfg.store_choice() {
        Ok(StoreChoice::Postgres(p)) => p.describe(),
        _ => format!("redb file {}", cfg.data_dir.join("confab.redb").display()),
    }
}

/// Backups and restores are of the redb file; PostgreSQL has its own tools.
fn refuse_on_postgres(cfg: &Config, what: &str) -> anyhow::Result<()> {
    if let Ok(StoreChoice::Postgres(p)) = cfg.store_choice() {
        anyhow::bail!(
            "confab {what} works on the embedded redb file, but this configuration keeps the data in the {}: use PostgreSQL's tools instead (pg_dump -Fc to back up, pg_restore to restore; see docs/OPERATIONS.md, \"PostgreSQL\")",
            p.describe()
        );
    }
    Ok(())
}

async fn store_copy(cfg: &Config, from: &std::path::Path) -> anyhow::Result<ExitCode> {
    let settings = match cfg.store_choice()? {
        StoreChoice::Postgres(p) => p,
        StoreChoice::Redb => anyhow::bail!(
            "confab store copy needs a PostgreSQL database to copy into: give --to postgres://USER@HOST/DATABASE (or set store / CONFAB_STORE_FILE)"
        ),
    };
    if !from.join("confab.redb").is_file() {
        anyhow::bail!(
            "there is no confab database at {}; --from names the data directory that holds confab.redb",
            from.join("confab.redb").display()
        );
    }
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new_spinner();
    let mut progress = |table: &str, n: u64| bar.set_message(format!("copying {table}: {n} rows"));
    let copied = crate::store::postgres::copy_from_redb(from, &settings, &mut progress).await;
    bar.finish_and_clear();
    let report = copied.map_err(|e| match e {
        crate::store::StoreError::Locked(dir) => anyhow::anyhow!(
            "a running server holds {}; stop it first (e.g. systemctl stop confab): the copy must see a data directory nobody writes to",
            dir.display()
        ),
        other => anyhow::anyhow!("{other}"),
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<18} {:>10}  sha256 (same in redb and PostgreSQL)",
        "table", "rows"
    );
    for t in &report.tables {
        println!("{:<18} {:>10}  {}", t.table, t.rows, t.checksum);
    }
    println!(
        "copied {} records (redb schema {}) from {} into the {} in {secs:.1} s ({:.0} records/s); every table verified",
        report.rows(),
        report.source_schema,
        from.display(),
        report.target,
        report.rows() as f64 / secs.max(1e-9)
    );
    println!(
        "next: set store to this database (CONFAB_STORE_FILE), keep data_dir (keys and search index stay there) and start confab; {} is unchanged, point the configuration back at it to undo",
        from.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn healthcheck(base: &str) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        // A liveness check of this machine's server: its certificate is
        // for the public name (or still self-signed), not for 127.0.0.1.
        .danger_accept_invalid_certs(crate::tls::is_local_https(base))
        .build()?;
    let url = format!("{}/health", base.trim_end_matches('/'));
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if v["status"] == "ok" {
                println!(
                    "ok: {url} (version {})",
                    v["version"].as_str().unwrap_or("?")
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("unhealthy: {url} answered {v}");
        }
        Ok(r) => println!("unhealthy: {url} answered HTTP {}", r.status()),
        Err(e) => println!("unreachable: {url}: {e}"),
    }
    Ok(ExitCode::from(1))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
    crate::ops::systemd::stopping("stopping: finishing running answers");
}

async fn serve_main(
    cfg: Config,
    reload: impl Fn() -> Result<Config, crate::config::ConfigError> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&cfg).await?;
    let store_what = store_description(&cfg);
    // `listen`, or with TLS the https (and plain-http) addresses.
    let listeners = crate::tls::bind_listeners(&cfg).await?;
    let (bound, url) = (listeners.local_addr()?, listeners.url());
    let data_dir = cfg.data_dir.clone();
    let state = crate::app::AppState::new(cfg, store, bound).await?;
    tracing::info!(url = %url, data_dir = %data_dir.display(), store = %store_what, version = crate::VERSION, "listening");
    crate::server::warn_low_open_files(state.cfg.http.max_connections);
    if let Some(url) = state.setup_url() {
        tracing::info!(%url, "first-run setup");
        tracing::info!(
            "no account exists yet: open the setup link above to create the first administrator"
        );
    }
    if let Some(addr) = state.cfg.metrics_listen {
        let l = crate::server::listen(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on metrics_listen {addr}: {e}"))?;
        tracing::info!(%addr, "serving /metrics on its own listener");
        tokio::spawn(crate::http::metrics::serve_metrics(l, state.clone()));
    }
    let _reload = crate::ops::reload::spawn_sighup(state.live.clone(), reload);
    let _watchdog = crate::ops::systemd::spawn_watchdog();
    crate::ops::systemd::ready(&format!("listening on {url}"));
    crate::app::serve_listeners(listeners, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn backup(
    cfg: &Config,
    dest: &std::path::Path,
    server_url: &str,
    api_key: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let (h, via) =
        crate::ops::backup::backup_command(&cfg.data_dir, dest, server_url, api_key).await?;
    let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup written to {} ({}): {} records, {:.1} MB, schema {}, taken {} in {:.1} s",
        dest.display(),
        match via {
            crate::ops::backup::BackupVia::RunningServer => "from the running server",
            crate::ops::backup::BackupVia::StoppedDataDir => "from the stopped data directory",
        },
        h.rows(),
        size as f64 / 1e6,
        h.schema_version,
        h.created_at,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn restore(cfg: &Config, file: &std::path::Path, reindex_now: bool) -> anyhow::Result<ExitCode> {
    let report = crate::ops::backup::restore_command(&cfg.data_dir, file)?;
    let h = &report.header;
    println!(
        "restored {} records (schema {}, taken {} by confab {}) into {}",
        h.rows(),
        h.schema_version,
        h.created_at,
        h.confab_version,
        cfg.data_dir.display()
    );
    for p in &report.set_aside {
        println!("kept the previous {}", p.display());
    }
    println!(
        "made a new JWT signing key (backups never hold one): access tokens issued before the restore no longer work; sessions, refresh tokens and API keys do"
    );
    // Migrations run now, so a backup from an older confab is checked here
    // rather than at the next start.
    let rt = runtime()?;
    let store = rt.block_on(open_store(cfg))?;
    if reindex_now {
        rt.block_on(reindex(&store, cfg))?;
        crate::ops::backup::match_owner(&cfg.data_dir, &[cfg.data_dir.join("index")])?;
    } else {
        println!("the search index will be rebuilt when the server starts");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password(input: &PasswordInput) -> anyhow::Result<String> {
    let pw = if input.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Repeat password: ")?;
        if a != b {
            anyhow::bail!("the passwords do not match");
        }
        a
    };
    crate::auth::password::validate("password", &pw).map_err(|m| anyhow::anyhow!(m))?;
    Ok(pw)
}

async fn find(store: &SharedStore, username: &str) -> anyhow::Result<User> {
    store
        .find_user_by_name(username)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user named {username:?}"))
}

/// A user-facing error for a refused account operation.
fn user_err(e: crate::users::UserError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn user_cmd(store: &SharedStore, cfg: &Config, cmd: &UserCmd) -> anyhow::Result<ExitCode> {
    let hasher = crate::auth::password::Hasher::new();
    let users = Users {
        store,
        hasher: &hasher,
        throttle: None,
    };
    let cli = Actor::cli();
    match cmd {
        UserCmd::Add {
            username,
            admin,
            email,
            password,
        } => {
            // Checked before asking for a password.
            let username = &crate::auth::validate_username(username)
                .map_err(|e| anyhow::anyhow!(e.public_message()))?;
            if let Some(e) = email {
                crate::auth::validate_email(e).map_err(|e| anyhow::anyhow!(e.public_message()))?;
            }
            if !*admin && store.user_count().await? == 0 {
                anyhow::bail!(
                    "the first account must be an administrator: add --admin (or use the setup link the server prints)"
                );
            }
            let new = NewUser {
                username: username.clone(),
                password: read_password(password)?,
                email: email.clone(),
                role: if *admin { Role::Admin } else { Role::User },
            };
            let user = match users.create_user(&cli, new).await {
                Ok(u) => u,
                Err(UserError::UsernameExists) => {
                    anyhow::bail!("username {username:?} is already taken")
                }
                Err(e) => return Err(user_err(e)),
            };
            println!(
                "created {} {} ({})",
                if *admin { "admin" } else { "user" },
                username,
                user.id
            );
        }
        UserCmd::List => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<38} {:<24} {:<6} {:<9} created",
                "id", "username", "role", "status"
            )?;
            let mut cursor = None;
            loop {
                let page = store.list_users(cursor, 500).await?;
                for u in &page {
                    writeln!(
                        out,
                        "{:<38} {:<24} {:<6} {:<9} {}",
                        u.id,
                        u.username,
                        format!("{:?}", u.role).to_lowercase(),
                        format!("{:?}", u.status).to_lowercase(),
                        crate::clock::rfc3339(u.created_at)
                    )?;
                }
                match page.last() {
                    Some(u) if page.len() == 500 => cursor = Some(u.id),
                    _ => break,
                }
            }
        }
        UserCmd::Passwd { username, password } => {
            let user = find(store, username).await?;
            // Like a reset through the admin API: sessions, refresh tokens
            // and API keys all end.
            let change = UserChange {
                password: Some(read_password(password)?),
                ..UserChange::default()
            };
            let (_, revoked) = users
                .update_user(&cli, user.id, change)
                .await
                .map_err(user_err)?;
            let revoked = revoked.unwrap_or_default();
            println!(
                "password changed for {username}; signed out {} and revoked {}",
                count(revoked.sessions, "session"),
                count(revoked.api_keys, "API key")
            );
        }
        UserCmd::Disable { username } | UserCmd::Enable { username } => {
            let disable = matches!(cmd, UserCmd::Disable { .. });
            let user = find(store, username).await?;
            let status = if disable {
                UserStatus::Disabled
            } else {
                UserStatus::Active
            };
            let change = UserChange {
                status: Some(status),
                ..UserChange::default()
            };
            users
                .update_user(&cli, user.id, change)
                .await
                .map_err(user_err)?;
            println!(
                "{username} is now {}",
                if disable { "disabled" } else { "active" }
            );
        }
        UserCmd::SetRole { username, role } => {
            let user = find(store, username).await?;
            let change = UserChange {
                role: Some((*role).into()),
                ..UserChange::default()
            };
            users
                .update_user(&cli, user.id, change)
                .await
                .map_err(user_err)?;
            println!("{username} is now {}", format!("{role:?}").to_lowercase());
        }
        UserCmd::ResetLink { username } => {
            let user = find(store, username).await?;
            let base = cfg.public_base(cfg.listen);
            let link = users
                .create_reset_link(&cli, user.id, &base)
                .await
                .map_err(user_err)?;
            println!("{}", link.url);
            eprintln!(
                "This link sets a new password for {username} once, until {}.",
                crate::clock::rfc3339(link.expires_at)
            );
        }
        UserCmd::ResetTwoFactor { username } => {
            let user = find(store, username).await?;
            let had = users
                .reset_two_factor(&cli, user.id)
                .await
                .map_err(user_err)?;
            if had {
                println!("two-factor sign-in is now off for {username}");
            } else {
                println!("{username} did not use two-factor sign-in");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "1 session", "2 sessions".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

async fn reindex(store: &SharedStore, cfg: &Config) -> anyhow::Result<ExitCode> {
    let search = crate::search::Search::open(&cfg.data_dir)?;
    if let Some(shared) = store.cluster() {
        // The queue is shared by the instances on the database: follow it
        // (the rebuilt index records where it stands) instead of draining
        // ops the running instances still need. Not an instance itself.
        search.follow_shared(shared, uuid::Uuid::nil());
    }
    let total = store.message_count().await?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} indexing [{bar:40}] {pos}/{len} messages ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let n = search
        .rebuild(store, |done, _| bar.set_position(done))
        .await?;
    let chunks = search.rebuild_knowledge(store).await?;
    bar.finish_and_clear();
    search.shutdown();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {n} messages and {chunks} document chunks in {secs:.1} s ({:.0} messages/s); index size {:.1} MB",
        n as f64 / secs.max(1e-9),
        search.disk_bytes() as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

async fn invite_cmd(
    store: &SharedStore,
    cfg: &Config,
    cmd: &InviteCmd,
) -> anyhow::Result<ExitCode> {
    let base = cfg.public_base(cfg.listen);
    let invites = Invites { store };
    let cli = Actor::cli();
    match cmd {
        InviteCmd::Create {
            uses,
            expires_in_hours,
            role,
        } => {
            let inv = invites
                .create_invite(
                    &cli,
                    Some(*uses),
                    Some(*expires_in_hours),
                    Some((*role).into()),
                )
                .await
                .map_err(user_err)?;
            println!("{}", invite_url(&base, &inv.code));
            eprintln!(
                "code {} for {} use(s) as {}, expires {}",
                inv.code,
                inv.uses_left,
                format!("{:?}", inv.role).to_lowercase(),
                crate::clock::rfc3339(inv.expires_at)
            );
        }
        InviteCmd::List => {
            println!("{:<24} {:<6} {:<5} expires", "code", "role", "uses");
            for i in invites.usable_invites(&cli).await.map_err(user_err)? {
                println!(
                    "{:<24} {:<6} {:<5} {}",
                    i.code,
                    format!("{:?}", i.role).to_lowercase(),
                    i.uses_left,
                    crate::clock::rfc3339(i.expires_at)
                );
            }
        }
        InviteCmd::Revoke { code } => match invites.revoke_invite(&cli, code).await {
            Ok(()) => println!("invite revoked"),
            Err(UserError::NotFound(_)) => anyhow::bail!("no invite with code {code:?}"),
            Err(e) => return Err(user_err(e)),
        },
    }
    Ok(ExitCode::SUCCESS)
}
