//! A throwaway PostgreSQL cluster for the tests: `initdb` and `pg_ctl start`
//! in a temporary directory, on a free TCP port of 127.0.0.1, with its Unix
//! socket in that directory. One cluster per test process, started on first
//! use; every test gets a database of its own ([`fresh_url`]).
//!
//! `initdb` refuses to run as root (CI runs as root): then the cluster runs
//! as the system user `confab-test`, created when missing, through `runuser`.
//!
//! The cluster must not outlive the test process, however it ends (a panic,
//! nextest's timeout kill, `kill -9`): a watchdog started in its own session
//! reads a pipe whose write end only this process holds; at EOF (this
//! process is gone) it stops PostgreSQL (SIGQUIT to the pid in its
//! `postmaster.pid`) and removes the directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use confab::config::StoreChoice;
use confab::store::SharedStore;
use confab::store::postgres::PgStore;

/// The unprivileged user the cluster runs as when the tests run as root.
pub const TEST_USER: &str = "confab-test";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// As whom PostgreSQL runs (None: as this process's user).
    user: Option<String>,
    /// Keeps the watchdog's stdin open while this process lives.
    _watchdog: Child,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("test PostgreSQL: {e}")))
}

/// A new, empty database on the test cluster; its `postgres://` URL.
pub async fn fresh_url() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let c = cluster();
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::now_v7().simple()
    );
    c.admin_sql(&format!("CREATE DATABASE {name}")).await;
    c.url(&name)
}

/// A store on a new, empty database (for the contract suite).
pub async fn fresh() -> (SharedStore, String) {
    let url = fresh_url().await;
    (open(&url).await, url)
}

/// Opens the store at `url` as the server would.
pub async fn open(url: &str) -> SharedStore {
    PgStore::open_shared(&settings(url)).await.unwrap()
}

/// The parsed settings of `url`.
pub fn settings(url: &str) -> confab::config::PgSettings {
    let u = confab::config::StoreUrl(url.to_string());
    match confab::config::store::parse_store(Some(&u), 8).unwrap() {
        StoreChoice::Postgres(p) => p,
        StoreChoice::Redb => unreachable!(),
    }
}

/// Runs `sql` on the database at `url`.
pub async fn exec(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
    drop(client);
    let _ = task.await;
}

/// The single BIGINT `sql` answers on the database at `url`.
pub async fn count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(connection);
    let n: i64 = client.query_one(sql, &[]).await.expect(sql).get(0);
    drop(client);
    let _ = task.await;
    n
}

impl Cluster {
    /// `postgres://` URL of database `db` (TCP, no TLS: the test cluster
    /// trusts local connections).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Runs one statement as the superuser, over the Unix socket.
    pub async fn admin_sql(&self, sql: &str) {
        let conn = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.join("sock").display(),
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        let task = tokio::spawn(connection);
        client.batch_execute(sql).await.expect(sql);
        drop(client);
        let _ = task.await;
    }

    /// A PostgreSQL program (`initdb`, `pg_ctl`, …) of the newest version
    /// installed under /usr/lib/postgresql.
    fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    fn as_user(&self, program: &Path) -> Command {
        let mut c = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(u).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        // Our working directory may be closed to that user.
        c.current_dir(&self.dir);
        c
    }

    fn start() -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let user = if running_as_root() {
            ensure_user()?;
            Some(TEST_USER.to_string())
        } else {
            None
        };
        // Under /tmp when another user must reach it: $TMPDIR may be inside
        // a directory only root can enter.
        let base = match &user {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let dir = tempfile::Builder::new()
            .prefix("confab-pg-")
            .tempdir_in(base)
            .map_err(|e| e.to_string())?
            .keep();
        std::fs::create_dir(dir.join("sock")).map_err(|e| e.to_string())?;
        // The watchdog first: from here on the directory goes with us.
        let watchdog = watchdog(&dir)?;
        // TLS with a certificate for "localhost" from a CA of our own
        // (the TLS test connects with each sslmode).
        let ca = crate::pebble::TestCa::new("confab test database CA");
        let (cert, key) = ca.leaf(&["localhost"]);
        std::fs::write(dir.join("ca.pem"), &ca.cert_pem).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("server.crt"), cert).map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("server.key"))
                .and_then(|mut f| f.write_all(key.as_bytes()))
                .map_err(|e| e.to_string())?;
        }
        if let Some(u) = &user {
            run(Command::new("chown").arg("-R").arg(u).arg(&dir))?;
        }
        let mut c = Cluster {
            dir,
            port: 0,
            bin,
            user,
            _watchdog: watchdog,
        };
        let data = c.dir.join("data");
        run(c.as_user(&c.tool("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]))?;
        // A free port can be taken between our probe and the server's bind:
        // try a few.
        let mut last = String::new();
        for _ in 0..5 {
            c.port = free_port();
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                c.port,
                c.dir.join("sock").display(),
                c.dir.join("server.crt").display(),
                c.dir.join("server.key").display()
            );
            let started = run(c
                .as_user(&c.tool("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(c.dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"]));
            match started {
                Ok(()) => return Ok(c),
                Err(e) => last = e,
            }
        }
        let log = std::fs::read_to_string(c.dir.join("server.log")).unwrap_or_default();
        Err(format!("pg_ctl start failed: {last}\n{log}"))
    }
}

/// A primary and a streaming replica of their own (not the shared
/// cluster), for the failover test: synchronous replication, so every
/// acknowledged commit is on the replica too.
pub struct Pair {
    pub dir: PathBuf,
    pub primary_port: u16,
    pub replica_port: u16,
    bin: PathBuf,
    user: Option<String>,
    _watchdog: Child,
}

impl Pair {
    /// Starts the primary, creates database `db`, and starts a replica
    /// streaming from it.
    pub async fn start(db: &str) -> Pair {
        let p = Self::start_servers().unwrap_or_else(|e| panic!("test PostgreSQL pair: {e}"));
        p.sql(p.primary_port, &format!("CREATE DATABASE {db}"))
            .await;
        p.start_replica()
            .unwrap_or_else(|e| panic!("test PostgreSQL replica: {e}"));
        // Until the replica streams, then commits wait for it.
        for _ in 0..600 {
            if p.streaming().await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(p.streaming().await, "the replica never started streaming");
        p.sql(
            p.primary_port,
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        )
        .await;
        p.sql(p.primary_port, "SELECT pg_reload_conf()").await;
        p
    }

    /// Both hosts, the writable one found by `target_session_attrs`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write&sslmode=disable",
            self.primary_port, self.replica_port
        )
    }

    /// Stops the primary at once (no shutdown checkpoint, as in a crash).
    pub fn stop_primary(&self) {
        run(self
            .cmd(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("primary"))
            .args(["-m", "immediate", "-w", "stop"]))
        .unwrap();
    }

    /// Promotes the replica to primary and waits until it accepts writes.
    pub fn promote_replica(&self) {
        run(self
            .cmd(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("replica"))
            .args(["-w", "promote"]))
        .unwrap();
    }

    async fn streaming(&self) -> bool {
        let (client, conn) =
            match tokio_postgres::connect(&self.socket(self.primary_port), tokio_postgres::NoTls)
                .await
            {
                Ok(c) => c,
                Err(_) => return false,
            };
        let task = tokio::spawn(conn);
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        drop(client);
        let _ = task.await;
        n > 0
    }

    fn socket(&self, port: u16) -> String {
        format!(
            "host={} port={port} user=postgres dbname=postgres",
            self.dir.join("sock").display()
        )
    }

    async fn sql(&self, port: u16, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.socket(port), tokio_postgres::NoTls)
            .await
            .expect("connect to the test pair");
        let task = tokio::spawn(conn);
        client.batch_execute(sql).await.expect(sql);
        drop(client);
        let _ = task.await;
    }

    fn cmd(&self, program: &Path) -> Command {
        let mut c = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(u).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        c.current_dir(&self.dir);
        c
    }

    fn opts(&self, port: u16) -> String {
        format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.dir.join("sock").display()
        )
    }

    fn start_servers() -> Result<Pair, String> {
        let bin = bin_dir()?;
        let user = if running_as_root() {
            ensure_user()?;
            Some(TEST_USER.to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("confab-pg-pair-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        std::fs::create_dir(dir.join("sock")).map_err(|e| e.to_string())?;
        let watchdog = watchdog(&dir)?;
        if let Some(u) = &user {
            run(Command::new("chown").arg("-R").arg(u).arg(&dir))?;
        }
        let p = Pair {
            dir,
            primary_port: free_port(),
            replica_port: free_port(),
            bin,
            user,
            _watchdog: watchdog,
        };
        run(p
            .cmd(&p.bin.join("initdb"))
            .arg("-D")
            .arg(p.dir.join("primary"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]))?;
        run(p
            .cmd(&p.bin.join("pg_ctl"))
            .arg("-D")
            .arg(p.dir.join("primary"))
            .arg("-l")
            .arg(p.dir.join("primary.log"))
            .args(["-w", "-t", "60", "-o", &p.opts(p.primary_port), "start"]))?;
        Ok(p)
    }

    fn start_replica(&self) -> Result<(), String> {
        run(self
            .cmd(&self.bin.join("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.primary_port.to_string(),
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                "-D",
            ])
            .arg(self.dir.join("replica")))?;
        run(self
            .cmd(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("replica"))
            .arg("-l")
            .arg(self.dir.join("replica.log"))
            .args([
                "-w",
                "-t",
                "60",
                "-o",
                &self.opts(self.replica_port),
                "start",
            ]))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for d in ["primary", "replica"] {
            let _ = run(self
                .cmd(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join(d))
                .args(["-m", "immediate", "-w", "stop"]));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The bin directory of the newest PostgreSQL under /usr/lib/postgresql.
fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("PostgreSQL is not installed (/usr/lib/postgresql: {e}); tests/run.sh installs Debian's postgresql")
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no PostgreSQL server under /usr/lib/postgresql/*/bin".into())
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Creates the system user the cluster runs as (several test processes
/// may race to do it: whoever loses finds the user there).
fn ensure_user() -> Result<(), String> {
    let exists = || {
        Command::new("id")
            .arg("-u")
            .arg(TEST_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if exists() {
        return Ok(());
    }
    let made = run(Command::new("useradd").args([
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        TEST_USER,
    ]));
    if exists() { Ok(()) } else { made }
}

/// Stops the cluster and removes `dir` once this process is gone.
fn watchdog(dir: &Path) -> Result<Child, String> {
    let script = r#"
cat >/dev/null
for f in "$1"/*/postmaster.pid; do
  pid=$(head -n 1 "$f" 2>/dev/null)
  if [ -n "$pid" ]; then
    kill -QUIT "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
    kill -KILL "$pid" 2>/dev/null
  fi
done
rm -rf "$1"
"#;
    Command::new("setsid")
        .args(["sh", "-c", script, "pg-watchdog"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster watchdog: {e}"))
}
