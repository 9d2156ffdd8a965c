//! Helpers shared by this crate's own privileged tests.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::privileges::require_privileges;

/// Serialises this crate's privileged tests so that checks over every namespace of this
/// process (leak checks) are not confused by another test's live namespaces.
static PRIVILEGED: Mutex<()> = Mutex::new(());

/// `None` (test skipped) without privileges; otherwise the serialisation guard.
pub(crate) fn privileged(test_name: &str) -> Option<MutexGuard<'static, ()>> {
    if !require_privileges(test_name) {
        return None;
    }
    Some(PRIVILEGED.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Namespaces of this process and root-namespace links with this process's interface
/// prefix that exist right now; both must be empty whenever no lab object is alive.
pub(crate) fn leftovers() -> (Vec<String>, Vec<String>) {
    let netns_prefix = crate::names::netns_process_prefix();
    let namespaces = crate::netns::list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|name| name.starts_with(&netns_prefix))
        .collect();
    let output = crate::cmd::ip(&["-j", "link", "show"]).unwrap();
    let links: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let if_prefix = crate::names::ifname_process_prefix();
    let links = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|link| link.get("ifname").and_then(serde_json::Value::as_str))
        .filter(|name| name.starts_with(&if_prefix))
        .map(str::to_owned)
        .collect();
    (namespaces, links)
}

/// Asserts that [`leftovers`] finds nothing.
pub(crate) fn assert_no_leftovers() {
    let (namespaces, links) = leftovers();
    assert!(
        namespaces.is_empty(),
        "namespaces left behind: {namespaces:?}"
    );
    assert!(
        links.is_empty(),
        "links left in the root namespace: {links:?}"
    );
}
