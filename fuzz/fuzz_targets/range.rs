//! Client `Range` headers against blobs of any size.
#![no_main]

use berth_http::range::{RangeAnswer, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &str)| {
    let (size, header) = input;
    if let RangeAnswer::Partial { start, end } = parse_range(Some(header), size) {
        assert!(start < end && end <= size);
    }
});
