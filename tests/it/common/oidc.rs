//! The OpenID Connect provider the single sign-on tests sign in at: the
//! certified `oidc-provider` npm package, configured by
//! `tests/oidc/provider.mjs` and run with node on a free loopback port
//! (`tests/run.sh` installs node and `npm ci`s tests/e2e), and a browser
//! stand-in that follows the redirects with cookies.

use reqwest::Url;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const CLIENT_ID: &str = "confab";
pub const CLIENT_SECRET: &str = "confab-test-secret-0123456789abcdef";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running provider; killed when dropped.
pub struct Provider {
    child: Child,
    pub port: u16,
    pub issuer: String,
}

impl Provider {
    /// Starts the provider on `port`, accepting `redirect_uri`, signing with
    /// key generation `generation` (a higher one is a rotated key).
    pub fn start(port: u16, redirect_uri: &str, generation: u32) -> Provider {
        let modules = repo().join("tests/e2e/node_modules/oidc-provider");
        assert!(
            modules.exists(),
            "{} is missing: run `npm ci` in tests/e2e (tests/run.sh does)",
            modules.display()
        );
        let mut last = String::new();
        // The port was free a moment ago; a restart may find it still held.
        for _ in 0..50 {
            let mut child = Command::new("node")
                .arg(repo().join("tests/oidc/provider.mjs"))
                .arg(port.to_string())
                .arg(redirect_uri)
                .arg(generation.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("node runs (tests/run.sh installs it)");
            let out = BufReader::new(child.stdout.take().unwrap());
            for line in out.lines() {
                let line = line.unwrap_or_default();
                if let Some(issuer) = line.strip_prefix("READY ") {
                    return Provider {
                        child,
                        port,
                        issuer: issuer.trim().to_string(),
                    };
                }
            }
            let _ = child.wait();
            last.clear();
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut last);
            if !last.contains("EADDRINUSE") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the OIDC provider did not start: {last}");
    }

    /// Makes the next ID tokens wrong in one way (`normal` undoes it).
    pub async fn set_mode(&self, mode: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/__test/mode?id_token={mode}", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser: cookies per host (names only; enough for two loopback hosts).
pub struct Browser {
    jars: BTreeMap<String, BTreeMap<String, String>>,
    http: Option<reqwest::Client>,
}

/// One answer the browser got.
pub struct Hop {
    pub url: Url,
    pub status: u16,
    pub location: Option<Url>,
    pub body: String,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            jars: BTreeMap::new(),
            http: Some(
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
            ),
        }
    }

    fn host(u: &Url) -> String {
        format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        )
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let u = Url::parse(url).unwrap();
        self.jars.get(&Self::host(&u))?.get(name).cloned()
    }

    pub fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        let u = Url::parse(url).unwrap();
        self.jars
            .entry(Self::host(&u))
            .or_default()
            .insert(name.into(), value.into());
    }

    pub fn forget(&mut self, url: &str, name: &str) {
        let u = Url::parse(url).unwrap();
        if let Some(j) = self.jars.get_mut(&Self::host(&u)) {
            j.remove(name);
        }
    }

    /// One request; remembers the cookies it sets.
    pub async fn send(
        &mut self,
        method: reqwest::Method,
        url: &Url,
        form: Option<&[(&str, &str)]>,
    ) -> Hop {
        let jar = self.jars.entry(Self::host(url)).or_default();
        let cookie = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut rb = self.http.as_ref().unwrap().request(method, url.clone());
        if !cookie.is_empty() {
            rb = rb.header("cookie", cookie);
        }
        if let Some(f) = form {
            rb = rb.form(f);
        }
        let r = rb.send().await.unwrap();
        for v in r.headers().get_all("set-cookie") {
            let c = v.to_str().unwrap();
            let first = c.split(';').next().unwrap();
            let (k, val) = first.split_once('=').unwrap();
            let gone = val.is_empty() || c.to_ascii_lowercase().contains("max-age=0");
            if gone {
                jar.remove(k.trim());
            } else {
                jar.insert(k.trim().to_string(), val.to_string());
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| url.join(l.to_str().unwrap()).unwrap());
        let body = r.text().await.unwrap_or_default();
        Hop {
            url: url.clone(),
            status,
            location,
            body,
        }
    }

    pub async fn get(&mut self, url: &Url) -> Hop {
        self.send(reqwest::Method::GET, url, None).await
    }

    /// Follows redirects from `start` while they stay on hosts other than
    /// `stop_host` (confab): returns the hop that leads to it.
    pub async fn follow_until(&mut self, start: Url, stop_host: &str, login: &str) -> Url {
        let mut url = start;
        for _ in 0..20 {
            let hop = self.get(&url).await;
            match hop.location {
                Some(next) if Self::host(&next) == stop_host => return next,
                Some(next) => url = next,
                None if hop.status == 200 && hop.body.contains("name=\"login\"") => {
                    let post = self
                        .send(reqwest::Method::POST, &hop.url, Some(&[("login", login)]))
                        .await;
                    let next = post.location.unwrap_or_else(|| {
                        panic!("the login form answered {}: {}", post.status, post.body)
                    });
                    if Self::host(&next) == stop_host {
                        return next;
                    }
                    url = next;
                }
                None => panic!(
                    "the provider answered {} at {}: {}",
                    hop.status, hop.url, hop.body
                ),
            }
        }
        panic!("too many redirects at the provider");
    }
}
