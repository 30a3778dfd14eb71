//! Manifest media types: the known ones, and which type a manifest's own
//! bytes give it.

/// An OCI image index (a list of manifests, one per platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A Docker manifest list (schema 2).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A signed Docker schema-1 manifest.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// An unsigned Docker schema-1 manifest.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Every manifest media type berth knows; the default `Accept` set it sends
/// upstream when a client sends none of its own.
pub const MANIFEST_MEDIA_TYPES: [&str; 6] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA1,
];

/// Whether `media_type` (parameters ignored) is a known manifest type.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    let bare = strip_params(media_type);
    MANIFEST_MEDIA_TYPES
        .iter()
        .any(|m| m.eq_ignore_ascii_case(bare))
}

pub(crate) fn strip_params(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// The two schema-1 types: signed and unsigned.
const SCHEMA1: [&str; 2] = [DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1];

/// Why bytes cannot be served as a manifest of any type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestTypeError {
    /// The bytes are not a manifest: not a JSON object with a
    /// `schemaVersion` of 1 or 2, or a `mediaType` that names no manifest.
    #[error("not a manifest: {0}")]
    NotAManifest(String),
    /// The `Content-Type` sent with the bytes names another manifest type
    /// than the bytes themselves.
    #[error("Content-Type {declared:?} contradicts the manifest's own type {own:?}")]
    Contradiction {
        /// The type sent beside the bytes.
        declared: String,
        /// The type the bytes carry or imply.
        own: String,
    },
}

/// What the bytes of a manifest say about its type.
#[derive(Debug, PartialEq, Eq)]
enum Own {
    /// Exactly this type (its `mediaType` field, or its shape).
    Exactly(&'static str),
    /// Schema 1: one of the two schema-1 types.
    Schema1,
    /// A schema-2 object of no telling shape: an OCI image manifest unless
    /// the sender says otherwise.
    Unclear,
}

fn own_type(bytes: &[u8]) -> Result<Own, ManifestTypeError> {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
        manifests: Option<IgnoredAny>,
        layers: Option<IgnoredAny>,
        config: Option<IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| ManifestTypeError::NotAManifest(format!("not a JSON object: {e}")))?;
    if let Some(t) = probe.media_type.as_deref().filter(|t| !t.is_empty()) {
        return known_type(t).map(Own::Exactly).ok_or_else(|| {
            let shown: String = t.chars().take(100).collect();
            ManifestTypeError::NotAManifest(format!("unknown mediaType {shown:?}"))
        });
    }
    match probe.schema_version {
        Some(1) => Ok(Own::Schema1),
        Some(2) if probe.manifests.is_some() => Ok(Own::Exactly(OCI_INDEX)),
        Some(2) if probe.layers.is_some() || probe.config.is_some() => {
            Ok(Own::Exactly(OCI_MANIFEST))
        }
        Some(2) => Ok(Own::Unclear),
        _ => Err(ManifestTypeError::NotAManifest(
            "no schemaVersion of 1 or 2".to_owned(),
        )),
    }
}

/// The canonical spelling of a known manifest type (parameters ignored).
pub(crate) fn known_type(media_type: &str) -> Option<&'static str> {
    let bare = strip_params(media_type);
    MANIFEST_MEDIA_TYPES
        .iter()
        .find(|m| m.eq_ignore_ascii_case(bare))
        .copied()
}

/// The media type to serve a manifest with, decided by its bytes: its own
/// `mediaType` field, else its shape (schema 1, an OCI index with
/// `manifests`, an OCI manifest with `layers` or `config`). `declared` (the
/// `Content-Type` upstream sent) only chooses where the bytes cannot tell:
/// between the two schema-1 types, or for a schema-2 object of no telling
/// shape. A declared manifest type that contradicts the bytes is refused;
/// a declared type that is no manifest type (`application/json`) is
/// ignored.
pub fn manifest_media_type(
    bytes: &[u8],
    declared: Option<&str>,
) -> Result<&'static str, ManifestTypeError> {
    let declared_type = declared.and_then(known_type);
    let contradiction = |declared: &str, own: &str| ManifestTypeError::Contradiction {
        declared: declared.to_owned(),
        own: own.to_owned(),
    };
    match (own_type(bytes)?, declared_type) {
        (Own::Exactly(own), Some(d)) if d != own => Err(contradiction(d, own)),
        (Own::Exactly(own), _) => Ok(own),
        (Own::Schema1, Some(d)) if SCHEMA1.contains(&d) => Ok(d),
        (Own::Schema1, Some(d)) => Err(contradiction(d, SCHEMA1[0])),
        (Own::Schema1, None) => Ok(SCHEMA1[0]),
        (Own::Unclear, d) => Ok(d.unwrap_or(OCI_MANIFEST)),
    }
}

/// The media type of a manifest whose upstream sent no `Content-Type`:
/// [`manifest_media_type`] without a declared type, or an OCI image
/// manifest for bytes that are no manifest at all (they are refused later).
pub fn sniff_manifest_type(bytes: &[u8]) -> String {
    manifest_media_type(bytes, None)
        .unwrap_or(OCI_MANIFEST)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            sniff_manifest_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            sniff_manifest_type(br#"{"schemaVersion":2}"#),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            sniff_manifest_type(b"not json"),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }

    const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

    #[test]
    fn the_bytes_decide_the_served_type() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#;
        assert_eq!(manifest_media_type(docker, Some(DOCKER_V2)), Ok(DOCKER_V2));
        assert_eq!(manifest_media_type(docker, None), Ok(DOCKER_V2));
        // Parameters, case and non-manifest types beside the bytes do not matter.
        for declared in [
            "Application/Vnd.Docker.Distribution.Manifest.V2+json; charset=utf-8",
            "application/json",
            "text/plain",
            "",
        ] {
            assert_eq!(manifest_media_type(docker, Some(declared)), Ok(DOCKER_V2));
        }
        // A lying manifest type is refused.
        assert_eq!(
            manifest_media_type(docker, Some(OCI_INDEX)),
            Err(ManifestTypeError::Contradiction {
                declared: OCI_INDEX.into(),
                own: DOCKER_V2.into()
            })
        );
        // Without a mediaType field the shape tells.
        let oci = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(manifest_media_type(oci, None), Ok(OCI_MANIFEST));
        assert!(manifest_media_type(oci, Some(OCI_INDEX)).is_err());
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(manifest_media_type(index, Some(OCI_INDEX)), Ok(OCI_INDEX));
        assert!(manifest_media_type(index, Some(OCI_MANIFEST)).is_err());
    }

    #[test]
    fn the_sender_chooses_only_where_the_bytes_cannot_tell() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert_eq!(manifest_media_type(schema1, None), Ok(SCHEMA1[0]));
        assert_eq!(
            manifest_media_type(schema1, Some(SCHEMA1[1])),
            Ok(SCHEMA1[1])
        );
        assert!(manifest_media_type(schema1, Some(DOCKER_V2)).is_err());
        let bare = br#"{"schemaVersion":2}"#;
        assert_eq!(manifest_media_type(bare, None), Ok(OCI_MANIFEST));
        assert_eq!(manifest_media_type(bare, Some(OCI_INDEX)), Ok(OCI_INDEX));
    }

    #[test]
    fn what_is_no_manifest_is_refused() {
        for bytes in [
            &b"not json"[..],
            br#"{"token":"abc","expires_in":60}"#,
            br#"{"schemaVersion":3}"#,
            br#"{"schemaVersion":2,"mediaType":"text/html"}"#,
            br#"[1,2]"#,
        ] {
            assert!(
                matches!(
                    manifest_media_type(bytes, Some(OCI_MANIFEST)),
                    Err(ManifestTypeError::NotAManifest(_))
                ),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn recognises_manifest_types() {
        assert!(is_manifest_media_type(
            "application/vnd.oci.image.manifest.v1+json; charset=utf-8"
        ));
        assert!(!is_manifest_media_type("application/json"));
    }
}
