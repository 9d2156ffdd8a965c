//! `[flood]` and the flood keys of a `[[vips]]` table: `rate_limit`, `rate_burst` and
//! `drop_user_agents`. The bounds are the kernel's: its bucket arithmetic is exact up to
//! `MAX_RATE` and `MAX_BURST`, and its match loop holds a fixed number of patterns of a
//! fixed length.

use sipxdp_common::flood::{
    MAX_BURST, MAX_RATE, MAX_USER_AGENT_PATTERN_LEN, MAX_USER_AGENT_PATTERNS, UserAgentPattern,
};
use toml::Spanned;

use super::{
    fields,
    model::{FloodConfig, Protocol, RateLimitConfig, VipFlood},
    parse::{RawFlood, RawVip},
    problems::Problems,
};

const SOURCES: (i64, i64) = (1, u32::MAX as i64);
const RATE: (i64, i64) = (0, MAX_RATE as i64);
const BURST: (i64, i64) = (1, MAX_BURST as i64);

pub(super) fn section(raw: &RawFlood, problems: &mut Problems) -> FloodConfig {
    let default = FloodConfig::default();
    FloodConfig {
        sources: fields::integer(
            problems,
            raw.sources.as_ref(),
            "[flood] sources",
            SOURCES,
            default.sources,
        ),
    }
}

/// A VIP's flood protection. Refused on a TCP VIP: the program balances its connections
/// without reading their payload, and a TCP source cannot spoof its address to flood.
pub(super) fn vip(raw: &RawVip, protocol: Protocol, problems: &mut Problems) -> VipFlood {
    if protocol == Protocol::Tcp {
        for (key, span) in [
            ("rate_limit", raw.rate_limit.as_ref().map(Spanned::span)),
            ("rate_burst", raw.rate_burst.as_ref().map(Spanned::span)),
            (
                "drop_user_agents",
                raw.drop_user_agents.as_ref().map(Spanned::span),
            ),
        ] {
            if let Some(span) = span {
                problems.at(
                    span,
                    format!(
                        "{key} applies to UDP VIPs only: the payload of a TCP VIP's \
                         connections is not read"
                    ),
                );
            }
        }
        return VipFlood::default();
    }
    VipFlood {
        rate_limit: rate_limit(raw, problems),
        drop_user_agents: drop_user_agents(raw, problems),
    }
}

fn rate_limit(raw: &RawVip, problems: &mut Problems) -> Option<RateLimitConfig> {
    let rate: u32 = fields::integer(problems, raw.rate_limit.as_ref(), "rate_limit", RATE, 0);
    let Some(raw_burst) = &raw.rate_burst else {
        return (rate > 0).then(|| RateLimitConfig {
            rate,
            burst: (u64::from(rate) * 2).min(MAX_BURST) as u32,
        });
    };
    let burst: u32 = fields::integer(problems, Some(raw_burst), "rate_burst", BURST, rate);
    if rate == 0 {
        if raw
            .rate_limit
            .as_ref()
            .is_none_or(|raw| *raw.get_ref() == 0)
        {
            problems.at(
                raw_burst.span(),
                "rate_burst needs a rate_limit above 0 (without one there is no limit)",
            );
        }
        return None;
    }
    if burst < rate {
        problems.at(
            raw_burst.span(),
            format!(
                "rate_burst {burst} is below rate_limit {rate}: a source could not send one \
                 second's worth at once"
            ),
        );
    }
    Some(RateLimitConfig { rate, burst })
}

fn drop_user_agents(raw: &RawVip, problems: &mut Problems) -> Vec<String> {
    let Some(list) = &raw.drop_user_agents else {
        return Vec::new();
    };
    if list.get_ref().len() > MAX_USER_AGENT_PATTERNS {
        problems.at(
            list.span(),
            format!(
                "drop_user_agents has {} patterns; the kernel matches at most \
                 {MAX_USER_AGENT_PATTERNS}",
                list.get_ref().len()
            ),
        );
    }
    for pattern in list.get_ref() {
        let text = pattern.get_ref();
        let problem = if text.is_empty() {
            Some(
                "a drop_user_agents pattern must not be empty (it would match every message)"
                    .to_owned(),
            )
        } else if text.len() > MAX_USER_AGENT_PATTERN_LEN {
            Some(format!(
                "drop_user_agents pattern {text:?} is {} bytes; the kernel matches at most \
                 {MAX_USER_AGENT_PATTERN_LEN}",
                text.len()
            ))
        } else if UserAgentPattern::new(text.as_bytes()).is_none() {
            Some(format!(
                "drop_user_agents pattern {text:?} holds a control character, which no \
                 header value line does"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            problems.at(pattern.span(), message);
        }
    }
    list.get_ref()
        .iter()
        .map(|pattern| pattern.get_ref().clone())
        .collect()
}
