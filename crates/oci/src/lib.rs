//! Pure OCI distribution domain types: repository names, tags, references,
//! digests, manifest media types, tag lists, the resources a request asks
//! for and the OCI error envelope.
//!
//! This crate performs no I/O and depends on no other berth crate, so
//! every other one can depend on it.

mod accept;
mod digest;
mod error;
mod manifest_check;
mod media_type;
mod name;
mod references;
mod tag_list;

pub use accept::{accept_key, answer_serves, is_whole_tag_answer, known_accept_lines};
pub use digest::{Digest, DigestError, DigestHasher, DigestVerifier, Verified};
pub use error::{ErrorCode, ErrorEnvelope, Resource};
pub use manifest_check::{NotAManifest, check_manifest};
pub use media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED,
    MANIFEST_MEDIA_TYPES, ManifestTypeError, OCI_INDEX, OCI_MANIFEST, is_manifest_media_type,
    manifest_media_type, sniff_manifest_type,
};
pub use name::{NameError, Reference, RepoName, Tag};
pub use references::{BlobRef, PlatformManifest, References, references};
pub use tag_list::{TagListError, check_tag_list};
