//! Parsers for the values TOML has no type for: durations, MAC addresses and reply code
//! ranges, written as strings.

use std::time::Duration;

use thiserror::Error;

/// Why a string is not the value it should be.
#[derive(Debug, Error, PartialEq, Eq)]
pub(super) enum ValueError {
    #[error(
        "{0:?} is not a duration: expected a whole number and a unit (ms, s, m or h), \
         such as \"500ms\" or \"2s\", or a number of seconds"
    )]
    Duration(String),
    #[error("duration {0:?} is too long")]
    DurationTooLong(String),
    #[error(
        "{0:?} is not a MAC address: expected six hexadecimal bytes such as \
         \"02:00:5e:10:00:01\""
    )]
    Mac(String),
    #[error(
        "{0:?} is not a reply code or range: expected a code such as 200 or a range such as \"200-299\""
    )]
    ReplyCodes(String),
}

/// A duration such as "500ms", "2s", "5m" or "1h": a whole number directly followed by a
/// unit. Fractions are refused rather than rounded, so what is written is what is used.
pub(super) fn duration(text: &str) -> Result<Duration, ValueError> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(ValueError::Duration(text.to_owned()));
    }
    let Ok(number) = number.parse::<u64>() else {
        return Err(ValueError::DurationTooLong(text.to_owned()));
    };
    let milliseconds_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(ValueError::Duration(text.to_owned())),
    };
    number
        .checked_mul(milliseconds_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| ValueError::DurationTooLong(text.to_owned()))
}

/// A MAC address: six bytes of two hexadecimal digits each, separated by ':' or '-'.
pub(super) fn mac(text: &str) -> Result<[u8; 6], ValueError> {
    let error = || ValueError::Mac(text.to_owned());
    let mut parts = text.split([':', '-']);
    let mut mac = [0; 6];
    for byte in &mut mac {
        let part = parts.next().ok_or_else(error)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(error());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| error())?;
    }
    match parts.next() {
        Some(_) => Err(error()),
        None => Ok(mac),
    }
}

/// A reply code ("200") or an inclusive range of them ("200-299"), as the two bounds;
/// whether they are valid codes is the caller's business.
pub(super) fn code_range(text: &str) -> Result<(i64, i64), ValueError> {
    let error = || ValueError::ReplyCodes(text.to_owned());
    let code = |part: &str| {
        let part = part.trim();
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        part.parse::<i64>().map_err(|_| error())
    };
    match text.split_once('-') {
        Some((low, high)) => Ok((code(low)?, code(high)?)),
        None => code(text).map(|single| (single, single)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "", "s", "2", "2 s", "1.5s", "-1s", "2S", "2sec", "ms", "2ms ",
        ] {
            assert_eq!(
                duration(bad),
                Err(ValueError::Duration(bad.to_owned())),
                "{bad}"
            );
        }
        for long in ["99999999999999999999s", "18446744073709551615h"] {
            assert_eq!(
                duration(long),
                Err(ValueError::DurationTooLong(long.to_owned()))
            );
        }
    }

    #[test]
    fn macs() {
        assert_eq!(mac("02:00:5e:10:00:01"), Ok([2, 0, 0x5e, 0x10, 0, 1]));
        assert_eq!(mac("02-00-5E-10-00-0A"), Ok([2, 0, 0x5e, 0x10, 0, 0x0a]));
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:01:02",
            "2:00:5e:10:00:01",
            "02:00:5e:10:00:0g",
            "+2:00:5e:10:00:01",
            "020:0:5e:10:00:01",
        ] {
            assert_eq!(mac(bad), Err(ValueError::Mac(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn code_ranges() {
        assert_eq!(code_range("200"), Ok((200, 200)));
        assert_eq!(code_range("200-299"), Ok((200, 299)));
        assert_eq!(code_range("200 - 299"), Ok((200, 299)));
        assert_eq!(code_range("299-200"), Ok((299, 200)));
        for bad in [
            "",
            "-",
            "2xx",
            "200-",
            "-200",
            "+200",
            "200-299-300",
            "99999999999999999999",
        ] {
            assert_eq!(
                code_range(bad),
                Err(ValueError::ReplyCodes(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
