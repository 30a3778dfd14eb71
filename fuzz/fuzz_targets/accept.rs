//! Client `Accept` lines, normalised into tag cache keys.
#![no_main]

use berth_oci::{accept_key, is_manifest_media_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|lines: Vec<&str>| {
    let key = accept_key(lines.iter().copied());
    let mut reversed = lines.clone();
    reversed.reverse();
    assert_eq!(accept_key(reversed.iter().copied()), key);
    for line in &lines {
        let _ = is_manifest_media_type(line);
    }
});
