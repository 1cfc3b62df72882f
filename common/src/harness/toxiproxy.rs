//! Network faults between real components, through Shopify's toxiproxy: a real TCP proxy
//! with an HTTP API, placed between a node and Redis, PostgreSQL, Geth or a CometBFT peer.
//!
//! [`Toxiproxy::start`] runs one server per test; [`Toxiproxy::proxy`] opens a proxy on a
//! free loopback port in front of an upstream address; a [`Proxy`] then cuts the link,
//! leaves it half-open, slows it, or heals it, the way networks fail.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::process::{Service, free_port, http_request, tool_binary};

/// How long the server may take to answer its API.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The toxiproxy server: `$TOXIPROXY_BIN`, else the one `scripts/setup.sh` installs.
pub fn toxiproxy_binary() -> anyhow::Result<PathBuf> {
    tool_binary("TOXIPROXY_BIN", "toxiproxy-server", "toxiproxy")
}

/// A running toxiproxy server.
#[derive(Debug)]
pub struct Toxiproxy {
    process: Service,
    api: String,
    _dir: tempfile::TempDir,
}

impl Toxiproxy {
    /// Starts a server on a free loopback port and waits for its API.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = super::process::temp_dir("toxiproxy-test-")?;
        let port = free_port()?;
        let mut command = Command::new(toxiproxy_binary()?);
        command.args(["-host", "127.0.0.1", "-port", &port.to_string()]).env("LOG_LEVEL", "warn");
        let process = Service::spawn("toxiproxy", command, &dir.path().join("toxiproxy.log"))?;
        let mut proxy = Self { process, api: format!("http://127.0.0.1:{port}"), _dir: dir };
        let version = format!("{}/version", proxy.api);
        proxy
            .process
            .wait_ready(STARTUP_TIMEOUT, || async { http_request("GET", &version, None).await.is_some() })
            .await?;
        Ok(proxy)
    }

    /// Its HTTP API, `http://127.0.0.1:port` (`GET /proxies` lists the links).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The server's log file.
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }

    /// A new proxy named `name`, listening on a free loopback port, in front of
    /// `upstream` (`host:port`).
    pub async fn proxy(&self, name: &str, upstream: &str) -> anyhow::Result<Proxy> {
        let body = json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true});
        let created = call(&format!("{}/proxies", self.api), "POST", Some(body)).await?;
        let listen = created["listen"].as_str().context("toxiproxy gave no listen address")?.to_owned();
        Ok(Proxy { api: format!("{}/proxies/{name}", self.api), name: name.to_owned(), listen })
    }
}

/// One proxied link.
#[derive(Debug, Clone)]
pub struct Proxy {
    api: String,
    name: String,
    /// Where clients connect instead of the upstream: `127.0.0.1:port`.
    pub listen: String,
}

impl Proxy {
    /// `host:port` to connect to.
    pub fn addr(&self) -> &str {
        &self.listen
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.listen.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// Cuts the link: open connections are closed, new ones refused.
    pub async fn cut(&self) -> anyhow::Result<()> {
        call(&self.api, "POST", Some(json!({"enabled": false}))).await.map(drop)
    }

    /// Leaves the link half-open both ways: connections stay up, and nothing gets through
    /// in either direction until [`Proxy::heal`]. No reply, no close: what a peer that lost
    /// power or a firewall that drops packets looks like.
    pub async fn half_open(&self) -> anyhow::Result<()> {
        for stream in ["upstream", "downstream"] {
            self.toxic(&format!("half_open_{stream}"), "timeout", stream, json!({"timeout": 0})).await?;
        }
        Ok(())
    }

    /// Delays every reply by `latency`.
    pub async fn slow(&self, latency: Duration) -> anyhow::Result<()> {
        self.jittery(latency, Duration::ZERO).await
    }

    /// Delays every reply by `latency`, give or take up to `jitter`.
    pub async fn jittery(&self, latency: Duration, jitter: Duration) -> anyhow::Result<()> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.toxic("latency", "latency", "downstream", json!({"latency": ms(latency), "jitter": ms(jitter)})).await
    }

    /// Limits the link to `kib_per_s` KiB/s each way.
    pub async fn narrow(&self, kib_per_s: u64) -> anyhow::Result<()> {
        for stream in ["upstream", "downstream"] {
            self.toxic(&format!("bandwidth_{stream}"), "bandwidth", stream, json!({"rate": kib_per_s})).await?;
        }
        Ok(())
    }

    /// Points the link at another `upstream` (`host:port`), as a virtual IP or a proxy
    /// in front of a failed-over server does: open connections are closed, new ones go to
    /// the new upstream.
    pub async fn redirect(&self, upstream: &str) -> anyhow::Result<()> {
        call(&self.api, "POST", Some(json!({"upstream": upstream}))).await.map(drop)
    }

    /// Removes every fault: the link is up again with no toxics.
    pub async fn heal(&self) -> anyhow::Result<()> {
        let toxics = call(&format!("{}/toxics", self.api), "GET", None).await?;
        for toxic in toxics.as_array().into_iter().flatten() {
            if let Some(name) = toxic["name"].as_str() {
                call(&format!("{}/toxics/{name}", self.api), "DELETE", None).await?;
            }
        }
        call(&self.api, "POST", Some(json!({"enabled": true}))).await.map(drop)
    }

    async fn toxic(&self, name: &str, kind: &str, stream: &str, attributes: Value) -> anyhow::Result<()> {
        let body = json!({"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes});
        call(&format!("{}/toxics", self.api), "POST", Some(body))
            .await
            .with_context(|| format!("cannot add a {kind} toxic to {}", self.name))
            .map(drop)
    }
}

/// One API call; its JSON answer (`null` for an empty one).
async fn call(url: &str, method: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let (code, text) = http_request(method, url, body.map(|b| b.to_string()))
        .await
        .with_context(|| format!("toxiproxy did not answer {method} {url}"))?;
    if !(200..300).contains(&code) {
        bail!("toxiproxy refused {method} {url}: {code} {text}");
    }
    if text.trim().is_empty() { Ok(Value::Null) } else { Ok(serde_json::from_str(&text)?) }
}
