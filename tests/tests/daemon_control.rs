//! The running daemon's control socket, through the `sipxdp` command line: `status`,
//! `hash` agreeing with where calls actually went, `backend drain|enable` moving only new
//! calls under a steady stream without losing a datagram, `reload`, and a socket that
//! refuses anyone but root.

use std::net::{IpAddr, SocketAddr};

use sipxdp_tests::{
    daemon_lab::DaemonLab,
    delivery::dialogs_by_backend,
    require_privileges,
    sipgen::{Call, Rng},
};

/// The user `nobody`.
const NOBODY: u32 = 65_534;

fn calls(seed: u64, count: usize) -> Vec<Call> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| Call::random(&mut rng, 25)).collect()
}

#[test]
fn operators_steer_the_running_daemon_through_its_control_socket() {
    if !require_privileges("operators_steer_the_running_daemon_through_its_control_socket") {
        return;
    }
    let lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5400);
    let backend = |number: usize| lab.backend_address(number, false);

    // `hash` names the backend each call went to.
    let first = calls(1, 300);
    let received = lab.send_dialogs(client, &first).expect("dialogs");
    let (backends_of, _) = dialogs_by_backend(&received);
    for call in first.iter().take(30) {
        let (ok, answer) = lab
            .control(&["hash", "lab", &call.call_id], None)
            .expect("sipxdp hash");
        assert!(ok, "{answer}");
        let went = backends_of[call.call_id.as_str()]
            .first()
            .copied()
            .expect("a backend");
        assert!(
            answer.starts_with(&backend(went).to_string()),
            "{} went to backend {went}; hash says {answer}",
            call.call_id
        );
    }

    // `status` lists every backend with the packets it got.
    let (ok, status) = lab.control(&["status"], None).expect("sipxdp status");
    assert!(ok, "{status}");
    println!("sipxdp status:\n{status}");
    for number in 1..=3 {
        let line = status
            .lines()
            .find(|line| line.trim_start().starts_with(&backend(number).to_string()))
            .unwrap_or_else(|| panic!("backend {number} in:\n{status}"));
        let packets: u64 = line
            .split_whitespace()
            .last()
            .and_then(|count| count.parse().ok())
            .expect("a packet count");
        assert!(packets > 0, "{line}");
        assert!(line.contains("active") && line.contains("yes"), "{line}");
    }

    // Draining backend 2: calls in progress keep it, new calls avoid it, nothing is lost
    // (every window of the stream must arrive whole).
    let ongoing = calls(2, 600);
    let client = SocketAddr::new(client.ip(), 5401);
    let invites: Vec<Vec<u8>> = ongoing
        .iter()
        .map(|call| call.invite(client, lab.vip(), 200))
        .collect();
    let before = lab.send(client, lab.vip(), &invites).expect("INVITEs");
    let target = backend(2).to_string();
    let (ok, answer) = lab
        .control(&["backend", "drain", "lab", &target], None)
        .expect("sipxdp backend drain");
    assert!(ok && answer.contains("draining"), "{answer}");
    let byes: Vec<Vec<u8>> = ongoing
        .iter()
        .map(|call| call.bye(client, lab.vip()))
        .collect();
    let after = lab.send(client, lab.vip(), &byes).expect("BYEs");
    let (ongoing_before, _) = dialogs_by_backend(&before);
    let (ongoing_after, _) = dialogs_by_backend(&after);
    assert_eq!(ongoing_before, ongoing_after, "no call in progress moved");
    assert!(ongoing_before.values().any(|set| set.contains(&2)));
    let fresh = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5402), &calls(3, 600))
        .expect("new calls");
    assert!(
        fresh.iter().all(|message| message.backend != 2),
        "draining takes no new calls"
    );
    let (_, status) = lab.control(&["status"], None).expect("status");
    assert!(status.contains("draining"), "{status}");

    // Enabling it again gives it new calls.
    let (ok, answer) = lab
        .control(&["backend", "enable", "lab", &target], None)
        .expect("sipxdp backend enable");
    assert!(ok && answer.contains("active"), "{answer}");
    let again = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5403), &calls(4, 600))
        .expect("calls");
    assert!(again.iter().any(|message| message.backend == 2));

    // Removing backend 3 takes it out of the VIP; adding it back (with another weight)
    // gives it new calls again; `status` follows.
    let third = backend(3).to_string();
    let (ok, answer) = lab
        .control(&["backend", "remove", "lab", &third], None)
        .expect("sipxdp backend remove");
    assert!(ok && answer.contains("removed"), "{answer}");
    let without = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5404), &calls(6, 300))
        .expect("calls");
    assert!(without.iter().all(|message| message.backend != 3));
    let (_, status) = lab.control(&["status"], None).expect("status");
    assert!(!status.contains(&third), "{status}");
    let (ok, answer) = lab
        .control(&["backend", "add", "lab", &third, "--weight", "2"], None)
        .expect("sipxdp backend add");
    assert!(ok && answer.contains("added with weight 2"), "{answer}");
    let with = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5405), &calls(7, 300))
        .expect("calls");
    assert!(with.iter().any(|message| message.backend == 3));

    // Mistakes are refused with a reason; `reload` answers.
    let (ok, answer) = lab
        .control(&["backend", "drain", "lab", "203.0.113.9:5060"], None)
        .expect("sipxdp backend");
    assert!(!ok && answer.contains("has no backend"), "{answer}");
    let (ok, answer) = lab.control(&["reload"], None).expect("sipxdp reload");
    assert!(ok && answer.contains("reloaded"), "{answer}");

    // Only root may use the socket.
    let (ok, answer) = lab.control(&["status"], Some(NOBODY)).expect("as nobody");
    assert!(!ok, "{answer}");
    assert!(answer.contains("only for its owner"), "{answer}");
}

#[test]
fn traffic_flows_through_a_crash_and_a_restart_of_the_daemon() {
    if !require_privileges("traffic_flows_through_a_crash_and_a_restart_of_the_daemon") {
        return;
    }
    let mut lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5500);
    let dialogs = calls(5, 900);
    let (first, rest) = dialogs.split_at(300);
    let (second, third) = rest.split_at(300);

    // Every window of each stream must arrive whole: zero loss, or `send` fails.
    let before = lab.send_dialogs(client, first).expect("before the crash");
    lab.kill_daemon().expect("kill -9");
    assert!(
        lab.attached().expect("link state"),
        "the pinned program stays"
    );
    let orphaned = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5501), second)
        .expect("while no daemon runs");
    lab.restart_daemon().expect("a new daemon");
    assert!(
        lab.daemon_log().contains("took over the pinned XDP link"),
        "{}",
        lab.daemon_log()
    );
    let after = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5502), third)
        .expect("after the restart");
    let (ok, answer) = lab.control(&["reload"], None).expect("reload");
    assert!(ok, "{answer}");
    let reloaded = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5503), first)
        .expect("after a reload");

    // The restarted daemon took over the maps: every call of the first stream, sent
    // again, reaches the backend it reached before the crash.
    let (old, _) = dialogs_by_backend(&before);
    let (new, _) = dialogs_by_backend(&reloaded);
    assert_eq!(old, new);
    for received in [&orphaned, &after] {
        let (backends_of, _) = dialogs_by_backend(received);
        assert!(backends_of.values().all(|set| set.len() == 1));
    }
}

#[test]
fn calls_in_progress_keep_their_backend_through_a_restart_after_a_weight_change() {
    let name = "calls_in_progress_keep_their_backend_through_a_restart_after_a_weight_change";
    if !require_privileges(name) {
        return;
    }
    let mut lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5510);
    let in_progress = calls(6, 600);
    let before = lab
        .send_dialogs(client, &in_progress)
        .expect("calls before the change");

    // The third backend's weight goes from 1 to 4: its share of the table from a third
    // to two thirds, so the table now places many of the calls elsewhere.
    lab.write_config(&[1, 1, 4]).expect("the new weights");
    let (ok, answer) = lab.control(&["reload"], None).expect("reload");
    assert!(ok, "{answer}");
    lab.stop_daemon().expect("the daemon stops");
    lab.restart_daemon().expect("a new daemon");

    // The calls in progress stay where they were, through the new daemon too.
    let after = lab
        .send_dialogs(client, &in_progress)
        .expect("the same calls after the restart");
    let (old, _) = dialogs_by_backend(&before);
    let (new, _) = dialogs_by_backend(&after);
    let moved: Vec<&&str> = old
        .keys()
        .filter(|call_id| old.get(*call_id) != new.get(*call_id))
        .collect();
    assert!(
        moved.is_empty(),
        "{} of {} calls moved, e.g. {:?}\n{}",
        moved.len(),
        old.len(),
        moved.first(),
        lab.daemon_log()
    );
    // New calls follow the new weights.
    let fresh = lab
        .send_dialogs(SocketAddr::new(client.ip(), 5511), &calls(7, 600))
        .expect("new calls");
    let (_, calls_of) = dialogs_by_backend(&fresh);
    assert!(
        calls_of.get(&3).copied().unwrap_or(0) > 600 / 2,
        "the third backend takes most new calls: {calls_of:?}"
    );
}

/// A tmux session, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn capture(&self) -> String {
        let output = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn top_shows_the_backends_and_their_rates_in_a_terminal() {
    let name = "top_shows_the_backends_and_their_rates_in_a_terminal";
    if !require_privileges(name) || !sipxdp_tests::require_command(name, "tmux") {
        return;
    }
    let lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let binary = sipxdp_tests::daemon_lab::sipxdp_binary().expect("the binary");
    let session = Tmux(format!("sipxdp-top-{}", std::process::id()));
    let started = std::process::Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "40",
            "-s",
            &session.0,
        ])
        .arg(format!(
            "{} top --interval 0.5 --socket {}",
            binary.display(),
            lab.control_socket().display()
        ))
        .status()
        .expect("tmux");
    assert!(started.success());
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5800);
    let backend_lines = |screen: &str| -> Vec<(String, f64)> {
        screen
            .lines()
            .filter(|line| line.trim_start().starts_with("198.51.100."))
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                Some((words.first()?.to_string(), words.last()?.parse().ok()?))
            })
            .collect()
    };
    let mut screen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut seed = 20;
    // Traffic flows in bounded windows until the screen shows every backend with a rate.
    while std::time::Instant::now() < deadline {
        seed += 1;
        lab.send_dialogs(client, &calls(seed, 100))
            .expect("dialogs");
        screen = session.capture();
        let lines = backend_lines(&screen);
        if lines.len() == 3 && lines.iter().all(|(_, rate)| *rate > 0.0) {
            break;
        }
    }
    let lines = backend_lines(&screen);
    assert_eq!(lines.len(), 3, "three backends on screen:\n{screen}");
    assert!(
        lines.iter().all(|(_, rate)| *rate > 0.0),
        "non-zero rates while traffic flows:\n{screen}"
    );
    assert!(
        screen.contains("PKT/S") && screen.contains("VIP lab"),
        "{screen}"
    );
}

#[test]
fn reloads_and_drains_while_a_stream_flows_lose_nothing() {
    if !require_privileges("reloads_and_drains_while_a_stream_flows_lose_nothing") {
        return;
    }
    let lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5900);
    let target = lab.backend_address(2, false).to_string();
    let binary = sipxdp_tests::daemon_lab::sipxdp_binary().expect("the binary");
    let socket = lab.control_socket();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Meanwhile, as fast as they answer: reload, drain, enable, over and over.
        let operator = scope.spawn(|| {
            let mut operations = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for args in [
                    vec!["reload"],
                    vec!["backend", "drain", "lab", &target],
                    vec!["backend", "enable", "lab", &target],
                ] {
                    let output = std::process::Command::new(&binary)
                        .args(&args)
                        .arg("--socket")
                        .arg(&socket)
                        .output()
                        .expect("sipxdp");
                    assert!(
                        output.status.success(),
                        "{args:?}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    operations += 1;
                }
            }
            operations
        });
        // The stream: 20 rounds of 100 dialogs, each window of which must arrive whole.
        let mut messages = 0;
        for round in 0..20 {
            let received = lab
                .send_dialogs(client, &calls(100 + round, 100))
                .expect("every window arrives whole");
            messages += received.len();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let operations = operator.join().expect("the operator");
        assert_eq!(messages, 20 * 100 * 3);
        assert!(operations >= 3, "operations ran during the stream");
    });
}
