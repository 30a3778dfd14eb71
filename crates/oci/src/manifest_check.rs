//! Whether an upstream answer is a manifest at all, by its `Content-Type`
//! and its shape, before berth serves or caches it: a token answer, a
//! metrics page or any other JSON an upstream (or a redirect) hands back in
//! place of a manifest is refused. Pure; no I/O.

use crate::media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, is_manifest_media_type,
};
use serde_json::{Map, Value};

/// Why an answer is not a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a manifest: {0}")]
pub struct NotAManifest(String);

/// Media types of image indexes (lists of manifests).
const INDEX_TYPES: [&str; 2] = [OCI_INDEX, DOCKER_MANIFEST_LIST];
/// Media types of single-image manifests.
const IMAGE_TYPES: [&str; 2] = [OCI_MANIFEST, DOCKER_MANIFEST];

/// Check that `bytes`, sent with `content_type` (if any), is a manifest:
/// the type, when given, is a manifest media type (or plain
/// `application/json`, which old registries send), and the body is a JSON
/// object with a `schemaVersion` and the shape of its kind: `fsLayers` for
/// schema 1; for schema 2, `manifests` for an index, `layers` (and an
/// object `config`, if any) for an image manifest.
pub fn check_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<(), NotAManifest> {
    let no = |why: String| Err(NotAManifest(why));
    if let Some(t) = content_type.map(|t| t.split(';').next().unwrap_or("").trim())
        && !t.is_empty()
        && !is_manifest_media_type(t)
        && !t.eq_ignore_ascii_case("application/json")
    {
        return no(format!("Content-Type {t:?} is not a manifest media type"));
    }
    let Ok(doc) = serde_json::from_slice::<Map<String, Value>>(bytes) else {
        return no("the body is not a JSON object".to_owned());
    };
    let is_array = |key: &str| doc.get(key).is_some_and(Value::is_array);
    match doc.get("schemaVersion").and_then(Value::as_u64) {
        Some(1) if is_array("fsLayers") => Ok(()),
        Some(1) => no("a schema 1 manifest without fsLayers".to_owned()),
        Some(2) => {
            let media_type = match doc.get("mediaType") {
                None => None,
                Some(Value::String(t)) => Some(t.as_str()),
                Some(_) => return no("mediaType is not a string".to_owned()),
            };
            if doc.get("config").is_some_and(|c| !c.is_object()) {
                return no("config is not an object".to_owned());
            }
            let known = |types: &[&str]| media_type.is_some_and(|m| types.contains(&m));
            let shaped = if known(&INDEX_TYPES) {
                is_array("manifests")
            } else if known(&IMAGE_TYPES) {
                is_array("layers")
            } else {
                is_array("manifests") || is_array("layers")
            };
            if shaped {
                Ok(())
            } else {
                no("neither an image manifest (layers) nor an index (manifests)".to_owned())
            }
        }
        Some(v) => no(format!("unknown schemaVersion {v}")),
        None => no("no schemaVersion".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCI_IMAGE: &str = OCI_MANIFEST;

    #[test]
    fn manifests_of_every_kind_pass() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert_eq!(check_manifest(image, Some(OCI_IMAGE)), Ok(()));
        assert_eq!(check_manifest(image, None), Ok(()));
        assert_eq!(
            check_manifest(image, Some("application/json; charset=utf-8")),
            Ok(())
        );
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(check_manifest(index, Some(OCI_INDEX)), Ok(()));
        let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"digest":"sha256:00"}]}"#;
        assert_eq!(check_manifest(list, None), Ok(()));
        let schema1 = br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[],"history":[]}"#;
        assert_eq!(
            check_manifest(
                schema1,
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            Ok(())
        );
    }

    #[test]
    fn other_answers_are_refused() {
        let refused = |body: &[u8], ct: Option<&str>| check_manifest(body, ct).is_err();
        // A token answer and a metrics page, as a redirect could return them.
        assert!(refused(
            br#"{"token":"abc","expires_in":300}"#,
            Some("application/json")
        ));
        assert!(refused(
            b"# HELP berth_http_requests_total x\n",
            Some("text/plain; version=0.0.4")
        ));
        assert!(refused(
            br#"{"schemaVersion":2,"layers":[]}"#,
            Some("text/html")
        ));
        assert!(refused(br#"[{"schemaVersion":2}]"#, None));
        assert!(refused(br#"{"schemaVersion":"2","layers":[]}"#, None));
        assert!(refused(br#"{"schemaVersion":3,"layers":[]}"#, None));
        assert!(refused(br#"{"schemaVersion":1}"#, None));
        assert!(refused(
            br#"{"schemaVersion":2,"name":"x","tags":[]}"#,
            None
        ));
        assert!(refused(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","layers":[]}"#,
            None
        ));
        assert!(refused(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#,
            None
        ));
        assert!(refused(
            br#"{"schemaVersion":2,"config":"x","layers":[]}"#,
            None
        ));
        assert!(refused(
            br#"{"schemaVersion":2,"mediaType":7,"layers":[]}"#,
            None
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = check_manifest(&bytes, None);
        }
    }
}
