//! Kamailio as a lab backend: a real SIP proxy that answers OPTIONS, INVITE and BYE with
//! `200 OK` (stateless), over UDP and TCP, and logs one line per request it receives, which
//! is how tests tell which backend got which call (and which TCP connection).

use std::{
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
    /// Starts Kamailio in `netns`, listening on UDP and TCP `port` of every address, with
    /// its configuration, runtime directory and log under `directory/name*`, and waits
    /// until it listens on both.
    pub fn start(netns: &Netns, directory: &Path, name: &str, port: u16) -> anyhow::Result<Self> {
        let config = directory.join(format!("{name}.cfg"));
        let runtime = directory.join(format!("{name}.run"));
        let log = directory.join(format!("{name}.log"));
        fs::create_dir_all(&runtime).with_context(|| format!("creating {}", runtime.display()))?;
        fs::write(&config, configuration(port))
            .with_context(|| format!("writing {}", config.display()))?;
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
        let listens = |transport: &str| {
            netns
                .run(&["ss", transport, &format!("sport = :{port}")])
                .is_ok_and(|output| !output.stdout.is_empty())
        };
        let listening = wait_until(Instant::now() + Duration::from_secs(15), || {
            matches!(child.try_wait(), Ok(Some(_))) || (listens("-Hlun") && listens("-Hltn"))
        });
        ensure!(
            listening && matches!(child.try_wait(), Ok(None)),
            "kamailio {name} did not start listening on port {port}:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        Ok(Self {
            child: Some(child),
            log,
        })
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

/// `... sipxdp-request CALL-ID METHOD SOURCE:PORT`.
fn parse_line(line: &str) -> Option<Request> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let mut words = rest.split_whitespace();
    let call_id = words.next()?.to_owned();
    let method = words.next()?.to_owned();
    let source = words.next()?.parse().ok()?;
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
        assert_eq!(parse_line("INFO: <core> starting"), None);
    }
}
