//! A real Prometheus per test, scraping the processes a test names, with the project's
//! rules (`monitoring/rules.yml`), every second.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{
    process::{Service, find_program, free_port, http_get},
    workspace_root,
};

/// How long Prometheus may take to get ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `$PROMETHEUS`, else `prometheus` on the PATH (Debian's package, which
/// `scripts/setup.sh services` installs).
pub fn prometheus_binary() -> anyhow::Result<PathBuf> {
    find_program("PROMETHEUS", "prometheus").context(
        "Prometheus not found: run `scripts/setup.sh services` (installs Debian's prometheus), or set PROMETHEUS",
    )
}

/// One process to scrape, with the labels `scripts/monitor.sh` gives it.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// The job: `member-nodes`, `geth`, …
    pub job: String,
    /// `host:port`.
    pub addr: String,
    /// The metrics path: `/metrics`, or Geth's `/debug/metrics/prometheus`.
    pub path: String,
    /// The `devnet` label.
    pub devnet: String,
    /// The `node` label.
    pub node: String,
}

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    process: Service,
    port: u16,
    _dir: tempfile::TempDir,
}

/// An alert as the HTTP API shows it.
#[derive(Debug, Clone)]
pub struct Alert {
    /// `alertname`.
    pub name: String,
    /// `pending` or `firing`.
    pub state: String,
    /// All its labels.
    pub labels: Value,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second and evaluating the project's rules,
    /// and waits until it is ready.
    pub async fn start(targets: &[ScrapeTarget]) -> anyhow::Result<Self> {
        let dir = super::process::temp_dir("prometheus-test-")?;
        std::fs::copy(workspace_root().join("monitoring/rules.yml"), dir.path().join("rules.yml"))
            .context("cannot copy monitoring/rules.yml")?;
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n",
        );
        for target in targets {
            config.push_str(&format!(
                "  - job_name: {}-{}\n    metrics_path: {}\n    static_configs:\n      - targets: [\"{}\"]\n        labels: {{devnet: {}, node: {}, job: {}}}\n",
                target.job, target.node, target.path, target.addr, target.devnet, target.node, target.job
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).context("cannot write prometheus.yml")?;
        let port = free_port()?;
        let mut command = Command::new(prometheus_binary()?);
        command
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let process = Service::spawn("prometheus", command, &dir.path().join("prometheus.log"))?;
        let mut prometheus = Self { process, port, _dir: dir };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        prometheus
            .process
            .wait_ready(STARTUP_TIMEOUT, || async { http_get(&ready).await.is_some_and(|(code, _)| code == 200) })
            .await?;
        Ok(prometheus)
    }

    /// The HTTP API's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query: each series' labels and value.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<(Value, f64)>> {
        let url = format!("{}/api/v1/query?query={}", self.url(), encode(promql));
        let data = api(&url).await?;
        let results = data["result"].as_array().cloned().unwrap_or_default();
        Ok(results
            .into_iter()
            .filter_map(|r| Some((r["metric"].clone(), r["value"][1].as_str()?.parse().ok()?)))
            .collect())
    }

    /// A range query, one sample every `step`: each series' labels and (time, value)s.
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> anyhow::Result<Vec<(Value, Vec<(f64, f64)>)>> {
        let url = format!(
            "{}/api/v1/query_range?query={}&start={start}&end={end}&step={}",
            self.url(),
            encode(promql),
            step.as_secs_f64()
        );
        let data = api(&url).await?;
        let results = data["result"].as_array().cloned().unwrap_or_default();
        Ok(results
            .into_iter()
            .map(|r| {
                let values = r["values"].as_array().cloned().unwrap_or_default();
                let points =
                    values.iter().filter_map(|v| Some((v[0].as_f64()?, v[1].as_str()?.parse().ok()?))).collect();
                (r["metric"].clone(), points)
            })
            .collect())
    }

    /// The alerts that are pending or firing.
    pub async fn alerts(&self) -> anyhow::Result<Vec<Alert>> {
        let data = api(&format!("{}/api/v1/alerts", self.url())).await?;
        Ok(data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| Alert {
                name: a["labels"]["alertname"].as_str().unwrap_or_default().to_owned(),
                state: a["state"].as_str().unwrap_or_default().to_owned(),
                labels: a["labels"].clone(),
            })
            .collect())
    }

    /// Whether the alert `name` fires (for `devnet`, if given).
    pub async fn firing(&self, name: &str, devnet: Option<&str>) -> anyhow::Result<bool> {
        Ok(self.alerts().await?.iter().any(|alert| {
            alert.name == name && alert.state == "firing" && devnet.is_none_or(|d| alert.labels["devnet"] == d)
        }))
    }

    /// The last `bytes` of Prometheus's log.
    pub fn log_tail(&self, bytes: u64) -> String {
        self.process.log_tail(bytes)
    }
}

/// An API answer's `data`, if it says success.
async fn api(url: &str) -> anyhow::Result<Value> {
    let (code, body) = http_get(url).await.with_context(|| format!("Prometheus did not answer {url}"))?;
    let answer: Value = serde_json::from_str(&body).with_context(|| format!("Prometheus answered {code}: {body}"))?;
    if answer["status"] != "success" {
        bail!("Prometheus refused {url}: {body}");
    }
    Ok(answer["data"].clone())
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `promtool check metrics` on a `/metrics` page: Prometheus's own lint of metric
/// names, types and help texts. Fails with promtool's findings.
pub async fn check_metrics(page: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let promtool = find_program("PROMTOOL", "promtool").context(
        "promtool not found: run `scripts/setup.sh services` (installs Debian's prometheus), or set PROMTOOL",
    )?;
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run promtool")?;
    let mut stdin = child.stdin.take().context("promtool's stdin")?;
    stdin.write_all(page.as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        bail!(
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
