//! What a manifest refers to: an image manifest's config and layers (the
//! blobs a client downloads next), and an index's platform manifests.
//! Pure; no I/O. What cannot be read (schema 1, bad JSON, a bad digest,
//! a layer hosted elsewhere) is simply not listed.

use crate::Digest;
use serde::Deserialize;

/// Entries listed at most per manifest.
const MAX_ENTRIES: usize = 1024;

/// A blob a manifest names, with the size it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size, as the manifest gives it.
    pub size: u64,
}

/// A platform's manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformManifest {
    /// The manifest's digest.
    pub digest: Digest,
    /// `os/arch`, or `os/arch/variant` when the index gives a variant.
    pub platform: String,
}

/// Everything a manifest refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// An image manifest's config, then its layers.
    pub blobs: Vec<BlobRef>,
    /// An index's platform manifests.
    pub manifests: Vec<PlatformManifest>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: Option<String>,
    size: Option<u64>,
    /// A foreign layer lives at these URLs, not in the registry.
    urls: Option<Vec<String>>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

fn blob(d: Descriptor) -> Option<BlobRef> {
    if d.urls.is_some_and(|u| !u.is_empty()) {
        return None;
    }
    Some(BlobRef {
        digest: d.digest?.parse().ok()?,
        size: d.size?,
    })
}

fn platform_manifest(d: Descriptor) -> Option<PlatformManifest> {
    let p = d.platform?;
    let mut platform = format!("{}/{}", p.os?, p.architecture?);
    if let Some(v) = p.variant.filter(|v| !v.is_empty()) {
        platform = format!("{platform}/{v}");
    }
    Some(PlatformManifest {
        digest: d.digest?.parse().ok()?,
        platform,
    })
}

/// What the manifest `bytes` refers to; empty when it cannot tell.
pub fn references(bytes: &[u8]) -> References {
    let Ok(m) = serde_json::from_slice::<Manifest>(bytes) else {
        return References::default();
    };
    References {
        blobs: m
            .config
            .into_iter()
            .chain(m.layers.unwrap_or_default())
            .filter_map(blob)
            .take(MAX_ENTRIES)
            .collect(),
        manifests: m
            .manifests
            .unwrap_or_default()
            .into_iter()
            .filter_map(platform_manifest)
            .take(MAX_ENTRIES)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_config_and_layers_but_not_foreign_layers() {
        let (c, l, f) = (Digest::of(b"c"), Digest::of(b"l"), Digest::of(b"f"));
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{c}","size":3}},"layers":[
                {{"digest":"{l}","size":5}},
                {{"digest":"{f}","size":7,"urls":["https://example.com/f"]}},
                {{"digest":"sha256:nope","size":1}}]}}"#
        );
        let refs = references(image.as_bytes());
        assert_eq!(
            refs.blobs,
            [
                BlobRef { digest: c, size: 3 },
                BlobRef { digest: l, size: 5 }
            ]
        );
        assert!(refs.manifests.is_empty());
    }

    #[test]
    fn lists_platform_manifests_of_an_index() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
                {{"digest":"{a}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
                {{"digest":"{b}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
                {{"digest":"{a}","size":1}}]}}"#
        );
        let platforms: Vec<String> = references(index.as_bytes())
            .manifests
            .into_iter()
            .map(|m| m.platform)
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm/v7"]);
        assert_eq!(references(b"not json"), References::default());
        assert_eq!(
            references(br#"{"schemaVersion":1,"fsLayers":[]}"#),
            References::default()
        );
    }
}
