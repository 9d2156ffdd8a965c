//! Kamailio as a lab backend: a real SIP proxy that answers OPTIONS, INVITE and BYE with
//! `200 OK` (stateless), over UDP and TCP, and logs one line per request it receives, which
//! is how tests tell which backend got which call (and which TCP connection).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::{ChildGuard, Netns, wait_until};

/// Where Debian installs Kamailio's modules.
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";
/// The marker of the log line Kamailio writes for each request.
const MARK: &str = "sipxdp-request";

/// One request a Kamailio received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub call_id: String,
    pub method: String,
    pub source: SocketAddr,
}

/// A running Kamailio in a namespace; stopped when dropped.
pub struct Kamailio {
    /// `None` once stopped.
    child: Option<ChildGuard>,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio in `netns`, listening on UDP `port` of every address and on TCP
    /// `port` of every IPv4 address (Kamailio's IPv6 TCP socket would take the IPv4 port
    /// too), with its configuration, runtime directory and log under `directory/name*`, and waits
    /// until it listens on both.
    pub fn start(netns: &Netns, directory: &Path, name: &str, port: u16) -> anyhow::Result<Self> {
        Self::spawn(
            netns,
            directory,
            name,
            &configuration(port),
            port,
            &["-Hlun", "-Hltn"],
        )
    }

    /// Starts Kamailio in `netns` as a stateless load balancer (the dispatcher module,
    /// algorithm 0: hash of the Call-ID) listening on UDP `vip`, forwarding every request
    /// from `source` (an address of the namespace, port `vip`'s) to `backends` with their
    /// weights, and waits until it listens. Replies go back by the Via it adds.
    pub fn start_dispatcher(
        netns: &Netns,
        directory: &Path,
        vip: SocketAddr,
        source: std::net::IpAddr,
        backends: &[(SocketAddr, u32)],
    ) -> anyhow::Result<Self> {
        let list = directory.join("dispatcher.list");
        let entries: String = backends
            .iter()
            .map(|(address, weight)| format!("1 sip:{address} 0 0 weight={weight}\n"))
            .collect();
        fs::write(&list, entries).with_context(|| format!("writing {}", list.display()))?;
        let config = dispatcher_configuration(vip, source, &list);
        Self::spawn(
            netns,
            directory,
            "dispatcher",
            &config,
            vip.port(),
            &["-Hlun"],
        )
    }

    /// Runs Kamailio with `config` in `netns` and waits until it listens on `port` for each
    /// of the `ss` socket filters in `listening` (`-Hlun` for UDP, `-Hltn` for TCP).
    fn spawn(
        netns: &Netns,
        directory: &Path,
        name: &str,
        config_text: &str,
        port: u16,
        listening: &[&str],
    ) -> anyhow::Result<Self> {
        let config = directory.join(format!("{name}.cfg"));
        let runtime = directory.join(format!("{name}.run"));
        let log = directory.join(format!("{name}.log"));
        fs::create_dir_all(&runtime).with_context(|| format!("creating {}", runtime.display()))?;
        fs::write(&config, config_text).with_context(|| format!("writing {}", config.display()))?;
        let stderr =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new("kamailio");
        command
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(&config)
            .arg("-Y")
            .arg(&runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = netns.spawn(command)?;
        let listens = |filter: &str| {
            netns
                .run(&["ss", filter, &format!("sport = :{port}")])
                .is_ok_and(|output| !output.stdout.is_empty())
        };
        let ready = wait_until(Instant::now() + Duration::from_secs(15), || {
            matches!(child.try_wait(), Ok(Some(_))) || listening.iter().all(|f| listens(f))
        });
        ensure!(
            ready && matches!(child.try_wait(), Ok(None)),
            "kamailio {name} did not start listening on port {port}:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        Ok(Self {
            child: Some(child),
            log,
        })
    }

    /// The pid of Kamailio's main process, which leads the process group of all its
    /// workers; `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(parse_line).collect()
    }

    /// Stops it: SIGTERM, so that Kamailio reaps its own workers, then SIGKILL after 5 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.take() {
            child.terminate(Duration::from_secs(5))?;
        }
        Ok(())
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = child.terminate(Duration::from_secs(5));
        }
    }
}

/// `... sipxdp-request CALL-ID METHOD SOURCE:PORT`, where an IPv6 source has no brackets.
fn parse_line(line: &str) -> Option<Request> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let mut words = rest.split_whitespace();
    let call_id = words.next()?.to_owned();
    let method = words.next()?.to_owned();
    let (address, port) = words.next()?.rsplit_once(':')?;
    let source = SocketAddr::new(address.parse().ok()?, port.parse().ok()?);
    Some(Request {
        call_id,
        method,
        source,
    })
}

/// A stateless responder: every request is logged with its Call-ID, method and source
/// (over TCP, the client's end of the connection); OPTIONS, INVITE and BYE get `200 OK`,
/// over TCP on the connection the request came in.
fn configuration(port: u16) -> String {
    format!(
        "#!KAMAILIO\n\
         debug=1\n\
         log_stderror=yes\n\
         children=2\n\
         auto_aliases=no\n\
         listen=udp:0.0.0.0:{port}\n\
         listen=tcp:0.0.0.0:{port}\n\
         listen=udp:[::]:{port}\n\
         mpath=\"{MODULES}\"\n\
         loadmodule \"sl.so\"\n\
         loadmodule \"pv.so\"\n\
         loadmodule \"xlog.so\"\n\
         loadmodule \"textops.so\"\n\
         request_route {{\n\
         \txlog(\"L_ALERT\", \"{MARK} $ci $rm $si:$sp\\n\");\n\
         \tif (is_method(\"OPTIONS|INVITE|BYE\")) {{\n\
         \t\tsl_send_reply(\"200\", \"OK\");\n\
         \t}}\n\
         \texit;\n\
         }}\n"
    )
}

/// The stateless dispatcher: no transaction state, no health checks (the benchmark
/// measures forwarding alone), two workers for the machine's two cores. It sends from
/// `source`, not from the VIP: the backends hold the VIP themselves (direct server return)
/// and would drop datagrams whose source is one of their own addresses.
fn dispatcher_configuration(vip: SocketAddr, source: std::net::IpAddr, list: &Path) -> String {
    let port = vip.port();
    format!(
        "#!KAMAILIO\n\
         debug=0\n\
         log_stderror=yes\n\
         children=2\n\
         auto_aliases=no\n\
         listen=udp:{vip}\n\
         listen=udp:{source}:{port}\n\
         mpath=\"{MODULES}\"\n\
         loadmodule \"dispatcher.so\"\n\
         modparam(\"dispatcher\", \"list_file\", \"{list}\")\n\
         modparam(\"dispatcher\", \"ds_ping_interval\", 0)\n\
         request_route {{\n\
         \tif (!ds_select_dst(\"1\", \"0\")) {{\n\
         \t\tdrop;\n\
         \t}}\n\
         \tforce_send_socket(udp:{source}:{port});\n\
         \tforward();\n\
         \texit;\n\
         }}\n",
        list = list.display()
    )
}

/// Where calls went, from requests the Kamailios logged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSpread {
    /// Requests logged.
    pub requests: usize,
    /// Distinct Call-IDs seen.
    pub calls: usize,
    /// Per backend number, the calls whose requests reached it.
    pub calls_of: BTreeMap<usize, usize>,
    /// Call-IDs whose requests reached more than one backend.
    pub split: Vec<String>,
}

/// Groups `requests` (backend number, request) by Call-ID.
pub fn spread(requests: &[(usize, Request)]) -> CallSpread {
    let mut backends_of: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (backend, request) in requests {
        backends_of
            .entry(&request.call_id)
            .or_default()
            .insert(*backend);
    }
    let mut result = CallSpread {
        requests: requests.len(),
        calls: backends_of.len(),
        ..CallSpread::default()
    };
    for (call_id, backends) in backends_of {
        if backends.len() > 1 {
            result.split.push(call_id.to_owned());
        }
        for backend in backends {
            *result.calls_of.entry(backend).or_default() += 1;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_read_back() {
        let line =
            "ALERT: <script>: sipxdp-request abc@client.example.com INVITE 198.51.100.10:5062";
        assert_eq!(
            parse_line(line),
            Some(Request {
                call_id: "abc@client.example.com".into(),
                method: "INVITE".into(),
                source: "198.51.100.10:5062".parse().unwrap(),
            })
        );
        let v6 = "ALERT: <script>: sipxdp-request x OPTIONS 2001:db8:1::100:5060";
        assert_eq!(
            parse_line(v6).map(|request| request.source),
            Some("[2001:db8:1::100]:5060".parse().unwrap())
        );
        assert_eq!(parse_line("INFO: <core> starting"), None);
    }

    #[test]
    fn calls_are_grouped_by_call_id() {
        let request = |call_id: &str| Request {
            call_id: call_id.into(),
            method: "INVITE".into(),
            source: "198.51.100.10:5062".parse().unwrap(),
        };
        let found = spread(&[
            (1, request("a")),
            (1, request("a")),
            (2, request("b")),
            (3, request("b")),
        ]);
        assert_eq!((found.requests, found.calls), (4, 2));
        assert_eq!(found.split, ["b"]);
        assert_eq!(found.calls_of, BTreeMap::from([(1, 1), (2, 1), (3, 1)]));
    }
}
