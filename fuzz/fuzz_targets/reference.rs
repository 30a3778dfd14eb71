//! Repository names and manifest references from request paths.
#![no_main]

use berth_oci::{Reference, RepoName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(name) = data.parse::<RepoName>() {
        let n = name.as_str();
        assert!(!n.contains("..") && !n.contains('%') && !n.starts_with('/'));
        assert_eq!(n.parse::<RepoName>().ok(), Some(name.clone()));
    }
    if let Ok(r) = data.parse::<Reference>() {
        assert_eq!(r.to_string(), data);
    }
});
