//! The .deb and .rpm: scripts/build-packages.sh builds both (cargo-deb,
//! cargo-generate-rpm) from the static test binary; their contents, modes,
//! config files and maintainer scripts are checked with dpkg-deb and rpm;
//! then the .deb is installed on this machine with dpkg (systemd need not
//! be running), the installed /usr/bin/confab reads /etc/confab/confab.toml
//! and serves as the `confab` system user, a reinstall keeps an edited
//! config, `dpkg -r` keeps config and data and `dpkg --purge` deletes both.
//!
//! Needs root, dpkg, rpm, cargo-deb and cargo-generate-rpm (tests/run.sh
//! installs what is missing). Refuses to run where a confab package or
//! /etc/confab, /var/lib/confab already exist, and purges what it installed
//! even when it fails. The `confab` system user stays, as Debian does for
//! system users.

use crate::ops_support;

use ops_support::{Client, PASSWORD, confab_at, run, start_with, static_binary, tempdir};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ETC: &str = "/etc/confab";
const CONF: &str = "/etc/confab/confab.toml";
const STATE: &str = "/var/lib/confab";
const INSTALLED_BIN: &str = "/usr/bin/confab";
const WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/confab.service";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command that must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let (out, _) = run(cmd.stdin(Stdio::null()), 0);
    out
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// dpkg's view of the package: e.g. "install ok installed",
/// "deinstall ok config-files", or "" when it does not know it.
fn dpkg_status() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "confab"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// dpkg's front-end lock, held the way apt holds it (an fcntl write lock on
/// /var/lib/dpkg/lock-frontend), so this test waits for a running apt-get
/// instead of failing, and two runs of it do not interleave. dpkg runs
/// with DPKG_FRONTEND_LOCKED=1 while it is held.
/// Holds the file open: closing it would release the lock.
struct DpkgLock {
    _file: std::fs::File,
}

fn dpkg_lock() -> DpkgLock {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open("/var/lib/dpkg/lock-frontend")
        .expect("open /var/lib/dpkg/lock-frontend (this test needs root and dpkg)");
    let t = Instant::now();
    loop {
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) } == 0 {
            return DpkgLock { _file: f };
        }
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "dpkg's lock stayed busy for 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn dpkg(args: &[&str]) -> String {
    let mut c = cmd("dpkg", args);
    c.env("DPKG_FRONTEND_LOCKED", "1");
    let out = c.stdin(Stdio::null()).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "dpkg {args:?}: {out:?}\n{o}\n{e}");
    format!("{o}{e}")
}

/// Purges the package when dropped, so a failing test leaves no
/// installation behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if !dpkg_status().is_empty() && !dpkg_status().contains("not-installed") {
            let _ = Command::new("dpkg")
                .args(["--purge", "confab"])
                .env("DPKG_FRONTEND_LOCKED", "1")
                .stdin(Stdio::null())
                .status();
        }
    }
}

fn mode(p: &str) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner(p: &str) -> (String, String) {
    let out = ok(&mut cmd("stat", &["-c", "%U %G", p]));
    let mut it = out.split_whitespace().map(str::to_string);
    (it.next().unwrap(), it.next().unwrap())
}

fn same_file(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

/// `confab` run as the `confab` system user (setpriv execs, so signals
/// reach confab itself).
fn as_confab() -> Command {
    let mut c = confab_at(Path::new("setpriv"));
    c.args([
        "--reuid=confab",
        "--regid=confab",
        "--init-groups",
        INSTALLED_BIN,
    ]);
    c
}

fn build_packages(bin: &Path, out: &Path) -> (PathBuf, PathBuf) {
    let t = Instant::now();
    let stdout = ok(ops_support::without_confab_env(&mut Command::new("bash"))
        .arg(repo().join("scripts/build-packages.sh"))
        .arg("--binary")
        .arg(bin)
        .arg("--out")
        .arg(out)
        .arg("--fast")
        .current_dir(repo())
        .stderr(Stdio::inherit()));
    let lines: Vec<&str> = stdout.lines().collect();
    let [.., deb, rpm] = lines[..] else {
        panic!("build-packages.sh prints the .deb and the .rpm: {stdout}");
    };
    let (deb, rpm) = (PathBuf::from(deb), PathBuf::from(rpm));
    eprintln!(
        "packages built in {:.1} s: {} ({} bytes), {} ({} bytes)",
        t.elapsed().as_secs_f64(),
        deb.display(),
        std::fs::metadata(&deb).unwrap().len(),
        rpm.display(),
        std::fs::metadata(&rpm).unwrap().len()
    );
    assert!(deb.extension().is_some_and(|e| e == "deb"), "{stdout}");
    assert!(rpm.extension().is_some_and(|e| e == "rpm"), "{stdout}");
    (deb, rpm)
}

fn check_deb(deb: &Path, bin: &Path, dir: &Path) {
    let d = deb.to_str().unwrap();
    let fields = ok(&mut cmd(
        "dpkg-deb",
        &["-f", d, "Package", "Version", "Architecture"],
    ));
    assert!(fields.contains("Package: confab\n"), "{fields}");
    assert!(
        fields.contains(&format!("Version: {}", confab::VERSION)),
        "{fields}"
    );
    assert!(fields.contains("Architecture: amd64\n"), "{fields}");

    // Paths, modes and owners in the archive.
    let list = ok(&mut cmd("dpkg-deb", &["-c", d]));
    let entry = |path: &str| -> String {
        list.lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the .deb:\n{list}"))
            .to_string()
    };
    // Owned by root (cargo-deb writes the ids, 0/0).
    for (path, perms) in [
        (INSTALLED_BIN, "-rwxr-xr-x"),
        (CONF, "-rw-r-----"),
        ("/usr/lib/systemd/system/confab.service", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/confab.conf", "-rw-r--r--"),
        ("/usr/share/doc/confab/OPERATIONS.md", "-rw-r--r--"),
    ] {
        let e = entry(path);
        let mut cols = e.split_whitespace();
        assert_eq!(cols.next(), Some(perms), "{e}");
        let owner = cols.next().unwrap_or("");
        assert!(owner == "0/0" || owner == "root/root", "{e}");
    }

    // /etc/confab/confab.toml is a conffile; the maintainer scripts are ours.
    let conffiles = ok(&mut cmd("dpkg-deb", &["-I", d, "conffiles"]));
    assert_eq!(conffiles.trim(), CONF);
    for script in ["postinst", "prerm", "postrm"] {
        let got = ok(&mut cmd("dpkg-deb", &["-I", d, script]));
        let want = std::fs::read_to_string(repo().join("packaging/debian").join(script)).unwrap();
        assert_eq!(got.trim(), want.trim(), "{script}");
    }

    // The files are the inputs: the binary as built, the unit, and the
    // default config with the packaged data directory.
    let x = dir.join("deb-contents");
    ok(cmd("dpkg-deb", &["-x", d]).arg(&x));
    assert!(same_file(&x.join("usr/bin/confab"), bin));
    assert!(same_file(
        &x.join("usr/lib/systemd/system/confab.service"),
        &repo().join("systemd/confab.service")
    ));
    assert!(same_file(
        &x.join("usr/lib/sysusers.d/confab.conf"),
        &repo().join("packaging/confab.sysusers")
    ));
    let conf = std::fs::read_to_string(x.join("etc/confab/confab.toml")).unwrap();
    assert!(
        conf.lines().any(|l| l == "data_dir = \"/var/lib/confab\""),
        "{conf}"
    );
}

fn check_rpm(rpm: &Path) {
    let r = rpm.to_str().unwrap();
    let nva = ok(&mut cmd(
        "rpm",
        &["-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}\n", r],
    ));
    assert_eq!(nva.trim(), format!("confab {} x86_64", confab::VERSION));

    let files = ok(&mut cmd("rpm", &["-qpl", r]));
    for path in [
        INSTALLED_BIN,
        CONF,
        "/usr/lib/systemd/system/confab.service",
        "/usr/lib/sysusers.d/confab.conf",
        "/usr/share/doc/confab/OPERATIONS.md",
    ] {
        assert!(files.lines().any(|l| l == path), "{path} not in:\n{files}");
    }

    // Flags (c = config, n = noreplace, d = doc), modes and owners.
    let flags = ok(&mut cmd(
        "rpm",
        &[
            "-qp",
            "--qf",
            "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}\n]",
            r,
        ],
    ));
    let line = |path: &str| -> String {
        flags
            .lines()
            .find(|l| l.starts_with(&format!("{path} ")))
            .unwrap_or_else(|| panic!("{path} not in:\n{flags}"))
            .to_string()
    };
    assert_eq!(line(CONF), format!("{CONF} cn -rw-r----- root"));
    assert_eq!(
        line(INSTALLED_BIN),
        format!("{INSTALLED_BIN}  -rwxr-xr-x root")
    );
    assert!(line("/usr/share/doc/confab/README.md").contains(" d "));

    // The scriptlets are packaging/rpm/*.sh.
    let scripts = ok(&mut cmd("rpm", &["-qp", "--scripts", r]));
    for (section, file) in [
        ("preinstall scriptlet", "pre.sh"),
        ("postinstall scriptlet", "post.sh"),
        ("preuninstall scriptlet", "preun.sh"),
        ("postuninstall scriptlet", "postun.sh"),
    ] {
        assert!(scripts.contains(section), "no {section}:\n{scripts}");
        let body = std::fs::read_to_string(repo().join("packaging/rpm").join(file)).unwrap();
        for l in body.lines().filter(|l| !l.trim().is_empty()) {
            assert!(scripts.contains(l), "{file}: {l:?} not in:\n{scripts}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_build_inspect_install_remove_and_purge() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test installs the .deb with dpkg, which needs root (CI runs as root)"
    );
    let bin = static_binary();
    let dir = tempdir();
    let (deb, rpm) = build_packages(&bin, &dir.path().join("dist"));
    check_deb(&deb, &bin, dir.path());
    check_rpm(&rpm);

    // ---- install --------------------------------------------------------
    let _lock = dpkg_lock();
    let status = dpkg_status();
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "a confab package is already on this machine ({status}); this test installs and purges its own: remove it first (dpkg --purge confab)"
    );
    for p in [ETC, STATE] {
        assert!(
            !Path::new(p).exists(),
            "{p} exists; this test installs the package and purges it, which would delete it: move it away first"
        );
    }
    let _installed = Installed;
    let systemd_running = Path::new("/run/systemd/system").exists();
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(dpkg_status(), "install ok installed", "{out}");
    assert!(same_file(Path::new(INSTALLED_BIN), &bin));
    assert_eq!(mode(INSTALLED_BIN), 0o755);
    let user = ok(&mut cmd("getent", &["passwd", "confab"]));
    assert!(
        user.trim().ends_with(":/var/lib/confab:/usr/sbin/nologin"),
        "{user}"
    );
    assert_eq!(mode(STATE), 0o700);
    assert_eq!(owner(STATE), ("confab".into(), "confab".into()));
    assert_eq!(mode(ETC), 0o750);
    assert_eq!(owner(ETC), ("root".into(), "confab".into()));
    assert_eq!(mode(CONF), 0o640);
    assert_eq!(owner(CONF), ("root".into(), "confab".into()));
    if Path::new("/usr/bin/deb-systemd-helper").exists() {
        // Enabled for the next boot even though systemd is not running.
        let link = std::fs::read_link(WANTS_LINK).expect("confab.service is enabled");
        assert!(link.ends_with("confab.service"), "{link:?}");
    }
    if systemd_running {
        // The postinst started the service; the steps below need the data
        // directory to themselves.
        let _ = Command::new("systemctl")
            .args(["stop", "confab.service"])
            .status();
    }

    // ---- the installed binary and config --------------------------------
    // No --config: /etc/confab/confab.toml is the default.
    let want = "configuration OK (/etc/confab/confab.toml): listen 127.0.0.1:8080, data dir /var/lib/confab";
    let out = ok(confab_at(Path::new(INSTALLED_BIN)).arg("check-config"));
    assert!(out.contains(want), "{out}");
    // The service user can read it (0640 root:confab).
    let out = ok(as_confab().arg("check-config"));
    assert!(out.contains(want), "{out}");
    ops_support::add_admin(as_confab(), "admin");
    let db = format!("{STATE}/confab.redb");
    assert_eq!(owner(&db), ("confab".into(), "confab".into()));
    assert_eq!(mode(&db), 0o600);

    // Serving as the service user, with the packaged config and data dir.
    let mut srv = start_with(as_confab(), Path::new(STATE), Path::new(CONF));
    let r = reqwest::get(format!("{}/health", srv.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    Client::login(&srv.url, "admin", PASSWORD)
        .await
        .expect("the admin made with the installed CLI signs in");
    srv.signal("TERM");
    assert!(srv.wait_exit(Duration::from_secs(30)).success());
    drop(srv);

    // ---- reinstall (the upgrade path) keeps an edited config -------------
    let mut edited = std::fs::read_to_string(CONF).unwrap();
    edited.push_str("\n# edited by the admin\n");
    std::fs::write(CONF, &edited).unwrap();
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(dpkg_status(), "install ok installed");
    assert_eq!(std::fs::read_to_string(CONF).unwrap(), edited);
    assert!(Path::new(&db).is_file());

    // ---- remove keeps config and data -------------------------------------
    dpkg(&["-r", "confab"]);
    assert_eq!(dpkg_status(), "deinstall ok config-files");
    assert!(!Path::new(INSTALLED_BIN).exists());
    assert_eq!(std::fs::read_to_string(CONF).unwrap(), edited);
    assert!(Path::new(&db).is_file(), "remove keeps the data");

    // ---- purge deletes both -------------------------------------------------
    dpkg(&["--purge", "confab"]);
    let status = dpkg_status();
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "{status}"
    );
    assert!(!Path::new(ETC).exists(), "purge deletes /etc/confab");
    assert!(!Path::new(STATE).exists(), "purge deletes /var/lib/confab");
    assert!(
        std::fs::symlink_metadata(WANTS_LINK).is_err(),
        "purge removes the enablement"
    );
    assert!(!Path::new("/usr/lib/systemd/system/confab.service").exists());
    assert!(
        std::fs::symlink_metadata("/etc/systemd/system/confab.service").is_err(),
        "purge unmasks the service"
    );
}
