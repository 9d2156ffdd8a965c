//! `sipxdp check-config` on the broken files operators write: each is refused with a
//! message that names the problem, and the shipped systemd unit is one systemd accepts.

use std::process::Command;

use sipxdp_tests::{
    daemon_lab::{check_config, sipxdp_binary},
    require_command,
};

/// A valid file's lines, which each case breaks in one way.
const VALID: &str = "[[interfaces]]\nname = \"lo\"\n\n[[vips]]\naddress = \"198.51.100.100\"\n\n\
    [[vips.backends]]\naddress = \"198.51.100.21\"\n";

#[test]
fn each_broken_file_is_refused_naming_its_problem() {
    let cases = [
        (
            "syntax error",
            VALID.replace("name = \"lo\"", "name = \"lo"),
            "string",
        ),
        (
            "unknown key",
            VALID.replace("[[vips]]\n", "[[vips]]\ncolour = \"blue\"\n"),
            "colour",
        ),
        (
            "bad address",
            VALID.replace("198.51.100.21", "198.51.100.421"),
            "198.51.100.421",
        ),
        (
            "duplicate backend",
            format!("{VALID}\n[[vips.backends]]\naddress = \"198.51.100.21\"\n"),
            "198.51.100.21:5060",
        ),
        (
            "weight 0 everywhere",
            VALID.replace(
                "address = \"198.51.100.21\"\n",
                "address = \"198.51.100.21\"\nweight = 0\n",
            ),
            "weight 0",
        ),
        (
            "unknown interface",
            VALID.replace("name = \"lo\"", "name = \"sipxdp-nosuch0\""),
            "sipxdp-nosuch0",
        ),
    ];
    let (valid, _) = check_config(VALID).expect("checking the valid file");
    assert!(valid.status.success(), "the valid file passes");
    for (name, text, named) in cases {
        let (output, path) = check_config(&text).expect("checking a broken file");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: refused");
        assert!(
            stderr.contains(&format!("{}:", path.display())),
            "{name}: the message gives a location:\n{stderr}"
        );
        assert!(
            stderr.contains(named),
            "{name}: the message names {named:?}:\n{stderr}"
        );
    }
}

#[test]
fn systemd_accepts_the_shipped_unit() {
    let name = "systemd_accepts_the_shipped_unit";
    if !require_command(name, "systemd-analyze") {
        return;
    }
    let binary = sipxdp_binary().expect("the sipxdp binary");
    let unit = include_str!("../../docs/sipxdp.service").replace(
        "/usr/local/bin/sipxdp",
        binary.to_str().expect("a UTF-8 path"),
    );
    let directory = std::env::temp_dir().join(format!("sipxdp-unit-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a directory");
    let path = directory.join("sipxdp.service");
    std::fs::write(&path, unit).expect("writing");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    std::fs::remove_dir_all(&directory).expect("cleaning up");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
