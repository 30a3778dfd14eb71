//! The 1 GiB single-layer image, built only for this benchmark (the test
//! suite's images stay small) by the testkit's bench image builder.

use berth_testkit::TestRegistry;
use berth_testkit::bench_image::{self, BenchImage};

/// Size of the layer's one file.
const MIB: u32 = 1024;
pub(crate) const REPOSITORY: &str = "library/gib";

/// The image as the upstream serves it.
#[derive(Debug, Clone)]
pub(crate) struct BigImage {
    pub(crate) manifest_len: u64,
    /// (digest, size) of the config blob.
    pub(crate) config: (String, u64),
    /// (digest, size) of the single layer.
    pub(crate) layer: (String, u64),
    image: BenchImage,
}

impl BigImage {
    /// Manifest + config + layer, in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.image.size()
    }

    /// "library/gib:latest"
    pub(crate) fn reference(&self) -> String {
        self.image.reference()
    }

    /// "/v2/library/gib/blobs/sha256:..." of the layer.
    pub(crate) fn layer_path(&self) -> String {
        self.image.blob_path(&self.layer.0)
    }
}

/// Pushes the image (built on first use) into `up` and describes it.
pub(crate) async fn push(up: &TestRegistry) -> BigImage {
    let image = bench_image::push(up, REPOSITORY, MIB, 1).await;
    assert_eq!(image.layers.len(), 1, "the big image has one layer");
    BigImage {
        manifest_len: image.manifest.len() as u64,
        config: image.config.clone(),
        layer: image.layers[0].clone(),
        image,
    }
}
