//! Header names: case-insensitive, with single-letter compact forms.

/// The compact forms of RFC 3261 §7.3.3 and the full names they stand for.
///
/// Only RFC 3261's own set: the extension forms (`o`, `r`, `u`, …) name headers
/// sipxdp never looks at, and an unknown compact name still compares equal to itself.
const COMPACT_FORMS: [(&str, &str); 10] = [
    ("i", "Call-ID"),
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("e", "Content-Encoding"),
];

/// The full name for a compact header name (`i` → `Call-ID`), or `name` itself.
///
/// Names are compared case-insensitively, so the result keeps the caller's case
/// for full names; compare it with [`str::eq_ignore_ascii_case`].
pub fn canonical_name(name: &str) -> &str {
    COMPACT_FORMS
        .iter()
        .find(|(compact, _)| compact.eq_ignore_ascii_case(name))
        .map_or(name, |(_, full)| full)
}

/// Whether two header names denote the same header.
pub(super) fn same_name(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_map_to_full_names() {
        assert_eq!(canonical_name("i"), "Call-ID");
        assert_eq!(canonical_name("V"), "Via");
        assert_eq!(canonical_name("l"), "Content-Length");
        assert_eq!(canonical_name("e"), "Content-Encoding");
        assert_eq!(canonical_name("X-Custom"), "X-Custom");
        assert_eq!(canonical_name("ii"), "ii");
    }

    #[test]
    fn names_compare_case_insensitively_and_through_compact_forms() {
        assert!(same_name("call-id", "Call-ID"));
        assert!(same_name("I", "CALL-ID"));
        assert!(!same_name("v", "i"));
        assert!(same_name("x", "X"));
    }
}
