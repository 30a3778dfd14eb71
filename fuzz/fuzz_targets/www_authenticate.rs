//! `WWW-Authenticate` challenges sent by upstreams.
#![no_main]

use berth_upstream::{Challenge, parse_challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(data) {
        assert!(data.len() >= realm.len());
    }
});
