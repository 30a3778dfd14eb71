//! Manifest media types and the normalisation of client `Accept` headers
//! into a cache key.

/// Every manifest media type berth knows; the default `Accept` set it sends
/// upstream when a client sends none of its own.
pub const MANIFEST_MEDIA_TYPES: [&str; 6] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
];

/// Whether `media_type` (parameters ignored) is a known manifest type.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    let bare = strip_params(media_type);
    MANIFEST_MEDIA_TYPES
        .iter()
        .any(|m| m.eq_ignore_ascii_case(bare))
}

fn strip_params(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// The media type of a manifest whose upstream sent no `Content-Type`: its
/// own `mediaType` field, else schema 1 by `schemaVersion`, else an OCI
/// image manifest (which has no required `mediaType`).
pub fn sniff_manifest_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(t),
            ..
        }) if !t.is_empty() => t,
        Ok(Probe {
            schema_version: Some(1),
            ..
        }) => MANIFEST_MEDIA_TYPES[4].to_owned(),
        _ => MANIFEST_MEDIA_TYPES[1].to_owned(),
    }
}

/// Normalise every `Accept` line a client sent into one stable key: the set
/// of media types, lowercased, parameters dropped, sorted and de-duplicated.
///
/// Two requests share a cached tag answer only when their keys are equal, so
/// a client that accepts only single-platform manifests never receives an
/// index that was fetched for a client that accepts indexes.
pub fn accept_key<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut types: Vec<String> = lines
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(|item| strip_params(item).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    types.sort();
    types.dedup();
    types.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_order_and_line_independent() {
        let a = accept_key([
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json;q=0.9, */*",
        ]);
        let b = accept_key([
            "*/*,application/vnd.docker.distribution.manifest.v2+json",
            "Application/vnd.oci.image.index.v1+json",
        ]);
        assert_eq!(a, b);
        assert_ne!(
            a,
            accept_key(["application/vnd.docker.distribution.manifest.v2+json"])
        );
        assert_eq!(accept_key([]), "");
    }

    proptest::proptest! {
        #[test]
        fn accept_key_ignores_order(mut items in proptest::collection::vec("[a-z/.+*-]{1,20}(;q=0\\.[0-9])?", 0..6)) {
            let forward = accept_key(items.iter().map(String::as_str));
            items.reverse();
            let joined = items.join(", ");
            proptest::prop_assert_eq!(accept_key([joined.as_str()]), forward);
        }
    }

    #[test]
    fn sniffs_missing_content_types() {
        assert_eq!(
            sniff_manifest_type(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#
            ),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            sniff_manifest_type(br#"{"schemaVersion":1,"name":"x"}"#),
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        );
        assert_eq!(
            sniff_manifest_type(b"{}"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            sniff_manifest_type(b"not json"),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }

    #[test]
    fn recognises_manifest_types() {
        assert!(is_manifest_media_type(
            "application/vnd.oci.image.manifest.v1+json; charset=utf-8"
        ));
        assert!(!is_manifest_media_type("application/json"));
    }
}
