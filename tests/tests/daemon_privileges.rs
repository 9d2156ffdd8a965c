//! Least privilege: the real `sipxdp run` with only the capabilities the README and the
//! systemd unit name balances traffic; without CAP_BPF it exits naming what it lacks and
//! leaves nothing attached.

use std::net::{IpAddr, SocketAddr};

use sipxdp_tests::{
    daemon_lab::DaemonLab,
    require_privileges,
    sipgen::{Call, Rng},
};

/// The capabilities of `docs/sipxdp.service`, as `setpriv` names them.
const DOCUMENTED: &str = "-all,+bpf,+net_admin,+perfmon,+net_raw";

/// `setpriv` keeping only `caps` in the bounding set: root then gets no others.
fn under(caps: &str) -> Vec<String> {
    ["setpriv", "--bounding-set", caps, "--"]
        .iter()
        .map(|word| (*word).to_owned())
        .collect()
}

#[test]
fn the_documented_capabilities_are_enough_and_without_cap_bpf_nothing_is_attached() {
    if !require_privileges(
        "the_documented_capabilities_are_enough_and_without_cap_bpf_nothing_is_attached",
    ) {
        return;
    }
    let mut lab = DaemonLab::start(&[1, 1]).expect("the lab");
    lab.stop_daemon().expect("stopping");
    lab.detach().expect("detaching");

    // Only the documented capabilities: the daemon attaches and balances.
    let wrapper = under(DOCUMENTED);
    let words: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    lab.set_daemon_wrapper(&words);
    lab.restart_daemon()
        .expect("sipxdp with the documented capabilities");
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5600);
    let mut rng = Rng::new(0xcab);
    let calls: Vec<Call> = (0..50).map(|_| Call::random(&mut rng, 20)).collect();
    let received = lab
        .send_dialogs(client, &calls)
        .expect("dialogs through the VIP");
    assert_eq!(received.len(), 3 * calls.len());
    lab.stop_daemon().expect("stopping");
    lab.detach().expect("detaching");
    assert!(!lab.attached().expect("link state"), "detached");

    // Without CAP_BPF: a clear refusal, nothing attached.
    let refused = lab
        .refused_run(&[
            "setpriv",
            "--bounding-set",
            "-all,+net_admin,+perfmon,+net_raw",
            "--",
        ])
        .expect("sipxdp refuses to run");
    assert!(
        refused.contains("lacks capabilities it needs: CAP_BPF"),
        "{refused}"
    );
    assert!(!lab.attached().expect("link state"), "nothing attached");
}
