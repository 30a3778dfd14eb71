//! The tag list (`GET /v2/<name>/tags/list`) as the distribution API
//! defines it, checked before berth caches or serves an upstream's copy.

use crate::Tag;

/// A tag list as the distribution API defines it.
#[derive(serde::Deserialize, serde::Serialize)]
struct TagList {
    name: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Why an upstream's tag list was refused.
#[derive(Debug, thiserror::Error)]
pub enum TagListError {
    /// Not JSON of the registry's shape.
    #[error("tag list: {0}")]
    Shape(String),
    /// A listed tag is not a valid tag (shown cut to 64 characters).
    #[error("tag list: {0:?} is not a tag")]
    NotATag(String),
}

/// Check a tag list body: a JSON object with a string `name` and a list of
/// valid tags (or null). Returns it re-serialised with just those fields
/// (a null list as `[]`).
pub fn check_tag_list(body: &[u8]) -> Result<Vec<u8>, TagListError> {
    let list: TagList =
        serde_json::from_slice(body).map_err(|e| TagListError::Shape(e.to_string()))?;
    if let Some(bad) = list
        .tags
        .iter()
        .flatten()
        .find(|t| t.parse::<Tag>().is_err())
    {
        return Err(TagListError::NotATag(bad.chars().take(64).collect()));
    }
    let list = TagList {
        tags: Some(list.tags.unwrap_or_default()),
        ..list
    };
    serde_json::to_vec(&list).map_err(|e| TagListError::Shape(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_must_have_the_registry_shape() {
        assert_eq!(
            check_tag_list(br#"{"name":"x","tags":["a","b"],"extra":1}"#).unwrap(),
            br#"{"name":"x","tags":["a","b"]}"#
        );
        assert_eq!(
            check_tag_list(br#"{"name":"x","tags":null}"#).unwrap(),
            br#"{"name":"x","tags":[]}"#
        );
        for bad in [
            &b"<html>"[..],
            br#"{"tags":["a"]}"#,
            br#"{"name":"x","tags":"a"}"#,
        ] {
            assert!(matches!(check_tag_list(bad), Err(TagListError::Shape(_))));
        }
        let long = format!(r#"{{"name":"x","tags":["../{}"]}}"#, "a".repeat(100));
        match check_tag_list(long.as_bytes()) {
            Err(TagListError::NotATag(shown)) => assert_eq!(shown.chars().count(), 64),
            other => panic!("{other:?}"),
        }
    }
}
