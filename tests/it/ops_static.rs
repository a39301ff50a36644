//! The release binary is one static executable that needs nothing from the
//! machine: built with `+crt-static` (scripts/build-release.sh, profile
//! `static-test` to keep it cheap), `file` calls it statically linked, and it
//! runs in an empty chroot holding only itself and /etc/resolv.conf (plus
//! the config file and data directory it is given; no /dev or /proc: random
//! numbers come from the getrandom syscall, see scripts/build-release.sh).
//! There it answers `version`, serves /health over TCP, signs in (argon2,
//! redb, tantivy), and streams an answer from a provider it finds by host
//! name: DNS goes through hickory-dns reading /etc/resolv.conf, with no NSS
//! and no libc resolver, to a small DNS server this test runs.
//!
//! chroot needs root (CI runs as root).

use crate::common_upstream;
use crate::ops_support;

use common_upstream::FakeUpstream;
use ops_support::{Client, confab_at, run, start_with, static_binary, tempdir, write_config};
use serde_json::Value;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The host name the provider is configured with; only the test's DNS
/// server knows it.
const UPSTREAM_NAME: &str = "upstream.confab-static.test";

/// An empty root: the binary at /confab and /etc/resolv.conf naming `dns`.
fn chroot_root(dir: &Path, bin: &Path, dns: Ipv4Addr) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(bin, root.join("confab")).unwrap();
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {dns}\noptions timeout:2 attempts:2\n"),
    )
    .unwrap();
    root
}

/// `chroot ROOT /confab` with a clean environment.
fn in_chroot(root: &Path) -> Command {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs the binary in a chroot, which needs root (CI runs as root)"
    );
    let mut c = confab_at(Path::new("chroot"));
    c.arg(root).arg("/confab");
    c
}

/// Everything in the root, as paths relative to it.
fn contents(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A DNS server on `ip:53` (UDP) that answers A queries for
/// [`UPSTREAM_NAME`] with 127.0.0.1, any other A/AAAA query with no
/// records, and records every name asked for.
struct Dns {
    ip: Ipv4Addr,
    asked: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Dns {
    fn start() -> Dns {
        // A loopback address of our own (all of 127/8 is local), so another
        // resolver on 127.0.0.1:53 or 127.0.0.53:53 is no obstacle.
        let mut tries = 0;
        let (sock, ip) = loop {
            let pid = std::process::id();
            let ip = Ipv4Addr::new(127, 53, (pid >> 8) as u8, (pid as u8).wrapping_add(tries));
            match UdpSocket::bind((ip, 53)) {
                Ok(s) => break (s, ip),
                Err(e) if tries < 20 => {
                    eprintln!("dns: cannot bind {ip}:53 ({e}), trying another address");
                    tries += 1;
                }
                Err(e) => panic!("cannot bind a DNS server on port 53: {e}"),
            }
        };
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                if let Some((reply, name, qtype)) = dns_answer(&buf[..n]) {
                    log.lock().unwrap().push((name, qtype));
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        Dns { ip, asked }
    }

    fn asked(&self) -> Vec<(String, u16)> {
        self.asked.lock().unwrap().clone()
    }
}

/// The reply to one query: (reply, name, qtype). None for what is not a
/// standard single-question query.
fn dns_answer(q: &[u8]) -> Option<(Vec<u8>, String, u16)> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root label, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let name = labels.join(".");
    let hit = qtype == 1 && name == UPSTREAM_NAME;
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[0..2]); // id
    r.push(0x80 | (q[2] & 0x79) | 0x04); // QR, opcode and RD copied, AA
    r.push(0x80); // RA, NOERROR
    r.extend_from_slice(&[0, 1, 0, u8::from(hit), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if hit {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some((r, name, qtype))
}

#[test]
fn the_release_build_is_statically_linked() {
    let bin = static_binary();
    let out = Command::new("file").arg("-L").arg(&bin).output().unwrap();
    let file = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "file {}: {out:?}", bin.display());
    // `file` says "statically linked", or "static-pie linked" for a static
    // position-independent executable; either way there is no interpreter.
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    assert!(!file.contains("dynamically linked"), "{file}");
    assert!(!file.contains("interpreter"), "{file}");
    // No PT_INTERP and no DT_NEEDED: read the ELF program headers.
    let elf = std::fs::read(&bin).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes(elf[0x36..0x38].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(elf[0x38..0x3a].try_into().unwrap()) as usize;
    let types: Vec<u32> = (0..phnum)
        .map(|k| {
            let at = phoff + k * phentsize;
            u32::from_le_bytes(elf[at..at + 4].try_into().unwrap())
        })
        .collect();
    const PT_INTERP: u32 = 3;
    assert!(!types.contains(&PT_INTERP), "program headers {types:?}");

    let (out, _) = run(confab_at(&bin).args(["version", "--json"]), 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["linkage"], "static", "{v}");
    assert_eq!(v["target"], "x86_64-unknown-linux-gnu", "{v}");
    assert_eq!(v["profile"], "release", "{v}");
    assert_eq!(v["version"], confab::VERSION, "{v}");
    eprintln!(
        "static-test binary: {} bytes ({})",
        std::fs::metadata(&bin).unwrap().len(),
        file.trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_an_empty_chroot_and_resolves_names_without_nss() {
    let bin = static_binary();
    let dns = Dns::start();
    let up = FakeUpstream::start().await;
    up.set_reply("answered inside the chroot");
    let dir = tempdir();
    let root = chroot_root(dir.path(), &bin, dns.ip);
    assert_eq!(contents(&root), ["confab", "etc", "etc/resolv.conf"]);

    // `version` with nothing around it.
    let (out, _) = run(in_chroot(&root).arg("version"), 0);
    assert!(
        out.starts_with(&format!("confab {}\n", confab::VERSION)),
        "{out}"
    );
    assert!(
        out.contains("x86_64-unknown-linux-gnu (static, release)"),
        "{out}"
    );

    // The provider by name: only the test's DNS server can resolve it.
    let base = up.openai_base().replace("127.0.0.1", UPSTREAM_NAME);
    assert!(base.contains(UPSTREAM_NAME), "{base}");
    write_config(&root.join("confab.toml"), &base, "");
    let (out, _) = run(
        in_chroot(&root).args(["--config", "/confab.toml", "check-config"]),
        0,
    );
    assert!(out.contains("configuration OK (/confab.toml)"), "{out}");

    let mut srv = start_with(
        in_chroot(&root),
        Path::new("/data"),
        Path::new("/confab.toml"),
    );
    // Over TCP from outside the chroot.
    let r = reqwest::get(format!("{}/health", srv.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], confab::VERSION);
    let r = reqwest::get(format!("{}/health/deep", srv.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the store works in the chroot");

    let c = Client::setup(&srv, "admin").await;
    let t = Instant::now();
    let answer = loop {
        match c.chat(None, "hello from outside", "fake-model").await {
            Ok(a) => break a,
            // The model list may still be on its first fetch.
            Err(e) if t.elapsed() < Duration::from_secs(20) => {
                eprintln!("chat not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("chat through the named provider failed: {e}"),
        }
    };
    assert_eq!(answer.1, "answered inside the chroot");
    assert!(answer.2);
    assert!(
        dns.asked()
            .iter()
            .any(|(n, t)| n == UPSTREAM_NAME && *t == 1),
        "the binary asked the resolv.conf name server: {:?}",
        dns.asked()
    );
    assert!(
        !up.chat_requests().is_empty(),
        "the answer came from the upstream found by name"
    );

    // A second process in the chroot: the CLI's HTTP client, too.
    let (_, _) = run(in_chroot(&root).args(["healthcheck", "--url", &srv.url]), 0);

    srv.signal("TERM");
    assert!(srv.wait_exit(Duration::from_secs(30)).success());
    // It wrote only inside its data directory.
    let left: Vec<String> = contents(&root)
        .into_iter()
        .filter(|p| !p.starts_with("data"))
        .collect();
    assert_eq!(left, ["confab", "confab.toml", "etc", "etc/resolv.conf"]);
    assert!(root.join("data/confab.redb").is_file());
}
