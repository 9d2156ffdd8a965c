//! Checks of single values, shared by the sections. Each takes the raw value (or `None`
//! when the key is absent), records a problem located at the value if it is bad, and returns
//! the typed value — or the default, so that checking goes on and finds every other problem.
//! A configuration with any problem is refused as a whole, so a default standing in for a
//! bad value never reaches the daemon.

use std::{
    fmt::Display,
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::PathBuf,
    time::Duration,
};

use toml::Spanned;

use super::{parse::Scalar, problems::Problems, values};

/// An integer key that must lie in `min..=max` and fit `T`.
pub(super) fn integer<T>(
    problems: &mut Problems,
    value: Option<&Spanned<i64>>,
    key: &str,
    (min, max): (i64, i64),
    default: T,
) -> T
where
    T: TryFrom<i64>,
{
    let Some(value) = value else {
        return default;
    };
    let number = *value.get_ref();
    let bound = if number < min {
        format!("at least {min}")
    } else if number > max {
        format!("at most {max}")
    } else if let Ok(number) = T::try_from(number) {
        return number;
    } else {
        // Only reached if a caller's range exceeds `T`; refuse rather than truncate.
        format!("between {min} and {max}")
    };
    problems.at(value.span(), format!("{key} must be {bound}, not {number}"));
    default
}

/// A string key that must be one of `choices`.
pub(super) fn keyword<T: Copy>(
    problems: &mut Problems,
    value: Option<&Spanned<String>>,
    key: &str,
    choices: &[(&str, T)],
    default: T,
) -> T {
    let Some(value) = value else {
        return default;
    };
    if let Some((_, choice)) = choices.iter().find(|(name, _)| name == value.get_ref()) {
        return *choice;
    }
    let names: Vec<String> = choices
        .iter()
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    problems.at(
        value.span(),
        format!(
            "{key} must be one of {}, not {:?}",
            names.join(", "),
            value.get_ref()
        ),
    );
    default
}

/// A duration key: a string with a unit ("500ms", "2s", "5m", "1h") or an integer number
/// of seconds. Zero is refused: no timer of the daemon makes sense without a period.
pub(super) fn duration(
    problems: &mut Problems,
    value: Option<&Spanned<Scalar>>,
    key: &str,
    default: Duration,
) -> Duration {
    let Some(value) = value else {
        return default;
    };
    let parsed = match value.get_ref() {
        Scalar::Integer(seconds) => u64::try_from(*seconds)
            .map(Duration::from_secs)
            .map_err(|_| format!("{key} must not be negative, not {seconds}")),
        Scalar::Text(text) => values::duration(text).map_err(|error| format!("{key}: {error}")),
    };
    match parsed {
        Ok(duration) if !duration.is_zero() => duration,
        Ok(_) => {
            problems.at(value.span(), format!("{key} must be longer than 0"));
            default
        }
        Err(message) => {
            problems.at(value.span(), message);
            default
        }
    }
}

/// A path key; it must be absolute so that it means the same whatever the daemon's working
/// directory.
pub(super) fn absolute_path(
    problems: &mut Problems,
    value: Option<&Spanned<String>>,
    key: &str,
    default: PathBuf,
) -> PathBuf {
    let Some(value) = value else {
        return default;
    };
    let path = PathBuf::from(value.get_ref());
    if path.is_absolute() {
        path
    } else {
        problems.at(
            value.span(),
            format!("{key} must be an absolute path, not {:?}", value.get_ref()),
        );
        default
    }
}

/// An IP address that can be a VIP or a backend: one host, reachable by unicast. `what`
/// names it in messages ("VIP address", "backend address").
pub(super) fn unicast_address(
    problems: &mut Problems,
    value: &Spanned<String>,
    what: &str,
) -> Option<IpAddr> {
    let text = value.get_ref();
    let Ok(address) = text.parse::<IpAddr>() else {
        problems.at(
            value.span(),
            format!("{what} {text:?} is not an IP address"),
        );
        return None;
    };
    let why_not = match address {
        _ if address.is_unspecified() => Some("is unspecified"),
        _ if address.is_multicast() => Some("is a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("is the broadcast address"),
        // The kernel stores IPv4 addresses in this form: it would be the IPv4 address.
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            Some("is IPv4-mapped: write the IPv4 address instead")
        }
        _ => None,
    };
    match why_not {
        Some(why_not) => {
            problems.at(value.span(), format!("{what} {address} {why_not}"));
            None
        }
        None => Some(address),
    }
}

/// A socket address such as "127.0.0.1:9560" or "[::1]:9560", with a port other than 0.
pub(super) fn socket_address(
    problems: &mut Problems,
    value: &Spanned<String>,
    key: &str,
) -> Option<SocketAddr> {
    match value.get_ref().parse::<SocketAddr>() {
        Ok(address) if address.port() != 0 => Some(address),
        Ok(address) => {
            problems.at(value.span(), format!("{key} {address} has port 0"));
            None
        }
        Err(_) => {
            problems.at(
                value.span(),
                format!(
                    "{key} {:?} is not an address and port such as \"127.0.0.1:9560\"",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

/// A unicast Ethernet address, as a backend's next hop must be.
pub(super) fn mac(problems: &mut Problems, value: &Spanned<String>) -> Option<[u8; 6]> {
    let mac = match values::mac(value.get_ref()) {
        Ok(mac) => mac,
        Err(error) => {
            problems.at(value.span(), format!("mac: {error}"));
            return None;
        }
    };
    let why_not = if mac == [0; 6] {
        Some("is all zeros")
    } else if mac[0] & 1 != 0 {
        Some("is a multicast or broadcast address")
    } else {
        None
    };
    match why_not {
        Some(why_not) => {
            problems.at(
                value.span(),
                format!(
                    "mac {:?} {why_not}: a backend needs its unicast address",
                    value.get_ref()
                ),
            );
            None
        }
        None => Some(mac),
    }
}

/// Records that the value at `span` repeats one first seen at `first`.
pub(super) fn duplicate(
    problems: &mut Problems,
    span: Range<usize>,
    what: impl Display,
    first: &Range<usize>,
) {
    let line = problems.line_of(first);
    problems.at(span, format!("{what} is already defined at line {line}"));
}
