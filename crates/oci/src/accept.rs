//! What a client's `Accept` header admits: the known manifest types among
//! its lines (all that goes upstream), the set as one key, and whether a
//! cached tag answer is what upstream would give that client.

use crate::media_type::{DOCKER_MANIFEST_LIST, OCI_INDEX, known_type, strip_params};

/// The multi-platform types. Upstream answers a client that accepts none
/// of them with one platform's manifest in place of the list.
const INDEX_TYPES: [&str; 2] = [OCI_INDEX, DOCKER_MANIFEST_LIST];

/// The known manifest types among every `Accept` line a client sent, in
/// their canonical spelling and without parameters: each line keeps only
/// the types not named before it, and lines left empty are dropped. What
/// a client adds besides them (other types, parameters) never reaches
/// upstream or a cache key, so at most six types do, however long the
/// header.
pub fn known_accept_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen: Vec<&'static str> = Vec::new();
    let mut out = Vec::new();
    for line in lines {
        let mut kept: Vec<&'static str> = Vec::new();
        for t in line.split(',').filter_map(known_type) {
            if !seen.contains(&t) {
                seen.push(t);
                kept.push(t);
            }
        }
        if !kept.is_empty() {
            out.push(kept.join(", "));
        }
    }
    out
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

/// Whether a tag answer of type `answer_type`, given to a client whose
/// [`accept_key`] was `asked`, is the tag's own content: a list, or any
/// answer to a set that accepts every kind of list (upstream had no list
/// to pick a platform from).
pub fn is_whole_tag_answer(answer_type: &str, asked: &str) -> bool {
    INDEX_TYPES.contains(&answer_type) || INDEX_TYPES.iter().all(|list| accepts(asked, list))
}

fn accepts(key: &str, media_type: &str) -> bool {
    key.split(',').any(|k| k == media_type)
}

/// Whether a tag answer of type `answer_type`, which upstream gave to a
/// client whose [`accept_key`] was `asked`, is what it would give a client
/// whose key is `client`.
///
/// - The same key gets the same answer.
/// - A client that does not accept the type never gets it.
/// - An index or manifest list is the tag itself: every client that
///   accepts its type gets it.
/// - A single-platform manifest may stand in for a list that `asked` did
///   not accept (upstream picks one platform for such a client). So it
///   serves only a client that accepts no multi-platform type `asked` did
///   not: a client that accepts a list upstream may hold gets that list,
///   never one platform's manifest of it.
pub fn answer_serves(answer_type: &str, asked: &str, client: &str) -> bool {
    if asked == client {
        return true;
    }
    if !accepts(client, answer_type) {
        return false;
    }
    INDEX_TYPES.contains(&answer_type)
        || INDEX_TYPES
            .iter()
            .all(|list| !accepts(client, list) || accepts(asked, list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::{DOCKER_MANIFEST as DOCKER_V2, OCI_MANIFEST};

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
    fn only_known_types_are_kept_from_accept_lines() {
        let junk = format!("application/x-junk-{}", "a".repeat(10_000));
        let lines = [
            "application/vnd.oci.image.index.v1+json;q=0.5, */*",
            junk.as_str(),
            "Application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json",
            "application/json",
        ];
        assert_eq!(
            known_accept_lines(lines),
            vec![
                "application/vnd.oci.image.index.v1+json".to_owned(),
                DOCKER_V2.to_owned()
            ]
        );
        assert!(known_accept_lines(["*/*", junk.as_str()]).is_empty());
    }

    fn key(types: &[&str]) -> String {
        accept_key(types.iter().copied())
    }

    #[test]
    fn a_cached_tag_answer_serves_only_who_upstream_would_give_it_to() {
        let everything = key(&crate::MANIFEST_MEDIA_TYPES);
        let v2_only = key(&[DOCKER_V2]);
        let oci_only = key(&[OCI_MANIFEST, OCI_INDEX]);
        // An image manifest fetched by a client that accepts lists is the
        // tag itself: a schema-2-only client gets it too.
        assert!(answer_serves(DOCKER_V2, &everything, &v2_only));
        // ... but not a client that does not accept its type.
        assert!(!answer_serves(DOCKER_V2, &everything, &oci_only));
        // A list serves whoever accepts lists of its kind.
        assert!(answer_serves(
            DOCKER_MANIFEST_LIST,
            &everything,
            &key(&[DOCKER_MANIFEST_LIST, DOCKER_V2])
        ));
        assert!(!answer_serves(DOCKER_MANIFEST_LIST, &everything, &v2_only));
        // One platform's manifest, given to a client that accepts no list,
        // never reaches a client that accepts lists: it would get the list.
        assert!(!answer_serves(DOCKER_V2, &v2_only, &everything));
        assert!(answer_serves(
            DOCKER_V2,
            &v2_only,
            &key(&[DOCKER_V2, OCI_MANIFEST])
        ));
        let docker_lists = key(&[DOCKER_MANIFEST_LIST, DOCKER_V2]);
        assert!(!answer_serves(DOCKER_V2, &docker_lists, &everything));
        assert!(answer_serves(DOCKER_V2, &docker_lists, &v2_only));
        // The same key always gets its own answer.
        assert!(answer_serves(DOCKER_V2, &oci_only, &oci_only));
    }
}
