//! The file as TOML: serde structs that mirror its tables key for key, before any
//! validation. Every table denies unknown keys, so a misspelt key is an error rather than a
//! silently ignored setting. Values that validation may refuse are [`Spanned`] so that the
//! problem can point at them; values TOML itself types completely (`enabled = true`) are not.
//! Strings that name a choice ("dsr", "info") stay strings here so that a wrong one is
//! reported together with every other problem instead of stopping at the first.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, Visitor},
};
use toml::Spanned;

use super::problems::{ConfigErrors, Problems};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub daemon: RawDaemon,
    pub metrics: RawMetrics,
    pub interfaces: Option<Spanned<Vec<Spanned<RawInterface>>>>,
    pub health_check: RawHealthCheck,
    pub sticky: RawSticky,
    pub fragments: RawFragments,
    pub tcp: RawTcp,
    pub slow_path: RawSlowPath,
    pub flood: RawFlood,
    pub vips: Vec<Spanned<RawVip>>,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub log_level: Option<Spanned<String>>,
    pub kernel_log_level: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub pin_path: Option<Spanned<String>>,
    pub hash_seed: Option<Spanned<i64>>,
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

/// `[[interfaces]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub name: Spanned<String>,
    pub xdp_mode: Option<Spanned<String>>,
}

/// `[health_check]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub enabled: Option<bool>,
    pub interval: Option<Spanned<Scalar>>,
    pub timeout: Option<Spanned<Scalar>>,
    pub down_after: Option<Spanned<i64>>,
    pub up_after: Option<Spanned<i64>>,
    pub reply_codes: Option<Spanned<Vec<Spanned<Scalar>>>>,
}

/// `[sticky]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSticky {
    pub entries: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<Scalar>>,
}

/// `[fragments]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFragments {
    pub entries: Option<Spanned<i64>>,
}

/// `[tcp]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTcp {
    pub connections: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<Scalar>>,
}

/// `[slow_path]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlowPath {
    pub enabled: Option<bool>,
    pub queue: Option<Spanned<i64>>,
}

/// `[flood]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlood {
    pub sources: Option<Spanned<i64>>,
}

/// `[[vips]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub name: Option<Spanned<String>>,
    pub address: Spanned<String>,
    pub port: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub keep_alive: Option<Spanned<String>>,
    pub non_sip: Option<Spanned<String>>,
    pub unplaceable: Option<Spanned<String>>,
    pub table_size: Option<Spanned<i64>>,
    pub rate_limit: Option<Spanned<i64>>,
    pub rate_burst: Option<Spanned<i64>>,
    pub drop_user_agents: Option<Spanned<Vec<Spanned<String>>>>,
    pub backends: Option<Spanned<Vec<Spanned<RawBackend>>>>,
}

/// `[[vips.backends]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub address: Spanned<String>,
    pub port: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub mac: Option<Spanned<String>>,
    pub state: Option<Spanned<String>>,
}

/// A value that may be written as an integer or as a string: a duration (`2` or `"2s"`) or
/// a reply code (`200` or `"200-299"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scalar {
    Integer(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
        Ok(Scalar::Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
        i64::try_from(value)
            .map(Scalar::Integer)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(value.to_owned()))
    }
}

/// Parses `text` as TOML into the raw structs. A syntax error, a value of the wrong type, a
/// missing required key or an unknown key stops here, with the one problem `toml` reports.
pub(super) fn from_toml(text: &str, origin: &str) -> Result<RawConfig, ConfigErrors> {
    toml::from_str(text).map_err(|error: toml::de::Error| {
        let mut problems = Problems::new(origin, text);
        let message = error.message().trim_end().to_owned();
        match error.span() {
            Some(span) => problems.at(span, message),
            None => problems.whole_file(message),
        }
        problems.into_errors()
    })
}
