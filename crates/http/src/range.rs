//! The `Range` request header for blobs: a single byte range, answered with
//! 206; an unsatisfiable one with 416; anything else with the full body.

/// What to send for a `Range` header against a blob of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send everything with 200.
    Full,
    /// Send bytes `start..end` with 206.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Interpret `header` for a blob of `size` bytes. Malformed headers and
/// multi-range requests are ignored (full body), as RFC 9110 allows.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        (Some(start), None, true) if start < size => RangeAnswer::Partial { start, end: size },
        (Some(_), None, true) => RangeAnswer::Unsatisfiable,
        (Some(start), Some(last), _) if start <= last => {
            if start >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start,
                    end: last.min(size - 1) + 1,
                }
            }
        }
        (None, Some(suffix), _) if first.trim().is_empty() => {
            if suffix == 0 || size == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start: size.saturating_sub(suffix),
                    end: size,
                }
            }
        }
        _ => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

    proptest::proptest! {
        #[test]
        fn partial_ranges_lie_inside_the_blob(header in "bytes=[0-9]{0,6}-[0-9]{0,6}|.{0,20}", size in 0u64..2_000_000) {
            match parse_range(Some(&header), size) {
                Partial { start, end } => proptest::prop_assert!(start < end && end <= size),
                Unsatisfiable | Full => {}
            }
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            Partial { start: 0, end: 5 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            Partial { start: 5, end: 10 }
        );
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            Partial { start: 8, end: 10 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Partial { start: 7, end: 10 }
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            Partial { start: 0, end: 10 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 10), Full);
        assert_eq!(parse_range(Some("bytes=+1-2"), 10), Full);
    }
}
