//! `sipxdp top`: the running daemon's `status`, redrawn every interval with each
//! backend's packet rate. The rate comes from two `status` answers (pure, [`Frame`]); the
//! loop that asks and draws lives in `main`.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

/// The packet counts of one `status` answer, keyed by (VIP, backend).
pub type Counts = BTreeMap<(String, String), u64>;

/// The packet counts in a `status` answer: its backend lines end with the count.
pub fn counts(status: &str) -> Counts {
    let mut counts = Counts::new();
    let mut vip = None;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VIP ") {
            vip = rest.split_whitespace().next().map(str::to_owned);
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let (Some(vip), Some(backend), Some(packets)) = (
            &vip,
            words.first(),
            words.last().and_then(|count| count.parse().ok()),
        ) {
            counts.insert((vip.clone(), (*backend).to_owned()), packets);
        }
    }
    counts
}

/// One screen: `status` with each backend line followed by its rate since `before`,
/// `elapsed` ago.
pub fn frame(status: &str, before: &Counts, elapsed: Duration) -> String {
    let now = counts(status);
    let mut text = String::new();
    let mut vip = String::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VIP ") {
            vip = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        let backend = line.split_whitespace().next().unwrap_or_default();
        let key = (vip.clone(), backend.to_owned());
        let rate = match (now.get(&key), before.get(&key)) {
            (Some(now), Some(before)) if elapsed > Duration::ZERO => {
                format!(
                    "{:>10.1}",
                    now.saturating_sub(*before) as f64 / elapsed.as_secs_f64()
                )
            }
            (Some(_), _) => format!("{:>10}", "-"),
            _ if line.trim_start().starts_with("BACKEND") => format!("{:>10}", "PKT/S"),
            _ => String::new(),
        };
        let _ = writeln!(text, "{line} {rate}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "VIP lab 198.51.100.100:5060/udp mode dsr\n  \
        BACKEND  WEIGHT STATE  UP  LATENCY  PACKETS\n  \
        198.51.100.21:5060  1 active yes  0.4 ms  150\n  \
        198.51.100.22:5060  1 active no  -  90\n";

    #[test]
    fn rates_follow_the_counts() {
        let before = counts(STATUS);
        assert_eq!(before[&("lab".into(), "198.51.100.21:5060".into())], 150);
        let later = STATUS.replace(" 150", " 250");
        let screen = frame(&later, &before, Duration::from_secs(2));
        assert!(screen.contains("PKT/S"), "{screen}");
        assert!(screen.contains("250       50.0"), "{screen}");
        assert!(screen.contains(" 90        0.0"), "{screen}");
    }
}
