//! How often and how strictly backends are probed.

use std::time::Duration;

use thiserror::Error;

/// The longest accepted interval. Kamailio users probe every few seconds; the
/// cap keeps every `Instant + interval` the prober computes far from overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Why settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("the interval must be positive and at most {MAX_INTERVAL:?}")]
    Interval,
    #[error("the timeout must be positive and shorter than the interval")]
    Timeout,
    #[error("down_after and up_after must be at least 1")]
    Threshold,
    #[error("at least one range of alive reply codes is needed")]
    NoAliveCodes,
    #[error("alive code range {0}-{1} is not an ordered range within 100-699 holding a final code")]
    AliveRange(u16, u16),
}

/// Probe settings, the counterparts of Kamailio dispatcher's `ds_ping_interval`,
/// `ds_probing_threshold`, `ds_inactive_threshold` and `ds_ping_reply_codes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Time between two pings of the same target.
    pub interval: Duration,
    /// How long a reply may take. Shorter than `interval`, so each target has
    /// at most one ping outstanding and every ping resolves before the next.
    pub timeout: Duration,
    /// Consecutive failures that take an Up target Down.
    pub down_after: u32,
    /// Consecutive successes that bring a Down target back Up.
    pub up_after: u32,
    /// Inclusive ranges of reply codes meaning "alive", within 100-699. Any
    /// other final reply is a failure (with 200-299, a backend answering 503 is
    /// reachable but refusing). Provisional replies never decide a probe, so
    /// 100-699 means "any final reply": any answer shows a live SIP stack.
    pub alive_codes: Vec<(u16, u16)>,
}

impl Settings {
    /// Checks the invariants the prober relies on.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.interval.is_zero() || self.interval > MAX_INTERVAL {
            return Err(SettingsError::Interval);
        }
        if self.timeout.is_zero() || self.timeout >= self.interval {
            return Err(SettingsError::Timeout);
        }
        if self.down_after == 0 || self.up_after == 0 {
            return Err(SettingsError::Threshold);
        }
        if self.alive_codes.is_empty() {
            return Err(SettingsError::NoAliveCodes);
        }
        // Provisional (1xx) codes never end a probe, so they may appear in a
        // range (the catch-all 100-699 reads naturally) but a range of nothing
        // else could never match.
        match self
            .alive_codes
            .iter()
            .find(|&&(low, high)| low < 100 || high > 699 || low > high || high < 200)
        {
            Some(&(low, high)) => Err(SettingsError::AliveRange(low, high)),
            None => Ok(()),
        }
    }

    /// Whether a final reply code counts as success.
    pub(super) fn is_alive(&self, code: u16) -> bool {
        self.alive_codes
            .iter()
            .any(|&(low, high)| (low..=high).contains(&code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        Settings {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            down_after: 3,
            up_after: 2,
            alive_codes: vec![(200, 299), (404, 404)],
        }
    }

    #[test]
    fn valid_settings_pass_and_classify_codes() {
        let settings = valid();
        assert_eq!(settings.validate(), Ok(()));
        assert!(settings.is_alive(200) && settings.is_alive(299) && settings.is_alive(404));
        assert!(!settings.is_alive(300) && !settings.is_alive(503) && !settings.is_alive(403));
    }

    #[test]
    fn invalid_settings_are_refused() {
        type Change = fn(&mut Settings);
        let cases: [(Change, SettingsError); 8] = [
            (|s| s.interval = Duration::ZERO, SettingsError::Interval),
            (|s| s.interval = MAX_INTERVAL * 2, SettingsError::Interval),
            (|s| s.timeout = s.interval, SettingsError::Timeout),
            (|s| s.timeout = Duration::ZERO, SettingsError::Timeout),
            (|s| s.down_after = 0, SettingsError::Threshold),
            (|s| s.up_after = 0, SettingsError::Threshold),
            (|s| s.alive_codes.clear(), SettingsError::NoAliveCodes),
            (
                |s| s.alive_codes.push((100, 199)),
                SettingsError::AliveRange(100, 199),
            ),
        ];
        for (change, expected) in cases {
            let mut settings = valid();
            change(&mut settings);
            assert_eq!(settings.validate(), Err(expected));
        }
        for (low, high) in [(299, 200), (99, 200), (600, 700)] {
            let mut settings = valid();
            settings.alive_codes = vec![(low, high)];
            assert_eq!(
                settings.validate(),
                Err(SettingsError::AliveRange(low, high))
            );
        }
        let mut settings = valid();
        settings.alive_codes = vec![(100, 699)];
        assert_eq!(settings.validate(), Ok(()), "the configuration's default");
    }
}
