//! Digests from request paths and upstream headers.
#![no_main]

use berth_oci::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(d) = data.parse::<Digest>() {
        assert_eq!(d.to_string(), data);
        assert_eq!(d.hex().len(), 64);
    }
});
