//! A real Prometheus server in a lab namespace, scraping sipxdp every second, and queries
//! through its HTTP API.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{ChildGuard, Netns, wait_until};

/// Where Prometheus listens, inside its namespace.
const LISTEN: &str = "127.0.0.1:9090";

/// A running Prometheus; stopped when dropped.
pub struct Prometheus {
    _child: ChildGuard,
}

/// `GET path` on `address` inside `netns`; the body of a 200 answer.
pub fn http_get(netns: &Netns, address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = netns.tcp_connect(address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("an HTTP answer without a head")?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path} on {address}: {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

impl Prometheus {
    /// Starts Prometheus in `netns`, scraping `target` every second, with its files under
    /// `directory`, and waits until it is ready.
    pub fn start(netns: &Netns, directory: &Path, target: SocketAddr) -> anyhow::Result<Self> {
        let config = directory.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: sipxdp\n    static_configs:\n      \
                 - targets: [\"{target}\"]\n"
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let log = fs::File::create(directory.join("prometheus.log"))?;
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = netns.spawn(command)?;
        let this = Self { _child: child };
        let address = LISTEN.parse()?;
        let ready = wait_until(Instant::now() + Duration::from_secs(30), || {
            http_get(netns, address, "/-/ready").is_ok()
        });
        ensure!(
            ready,
            "prometheus did not become ready:\n{}",
            fs::read_to_string(directory.join("prometheus.log")).unwrap_or_default()
        );
        Ok(this)
    }

    /// The instant vector of `query`, asked from `netns` (where it runs): each series'
    /// labels and value.
    pub fn query(
        &self,
        netns: &Netns,
        query: &str,
    ) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
        let encoded: String = query
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let body = http_get(
            netns,
            LISTEN.parse()?,
            &format!("/api/v1/query?query={encoded}"),
        )?;
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        if answer["status"] != "success" {
            bail!("query {query}: {body}");
        }
        let mut series = Vec::new();
        for item in answer["data"]["result"]
            .as_array()
            .context("a result list")?
        {
            let value = item["value"][1]
                .as_str()
                .and_then(|value| value.parse().ok())
                .context("a sample value")?;
            series.push((item["metric"].clone(), value));
        }
        Ok(series)
    }
}
