//! The public registries berth knows without any configuration.

use crate::file::RawUpstream;

/// (name, url, host_prefix, realm_hosts)
const BUILTIN: [(&str, &str, &str, &[&str]); 10] = [
    (
        "docker.io",
        "https://registry-1.docker.io",
        "docker",
        &["auth.docker.io"],
    ),
    ("ghcr.io", "https://ghcr.io", "ghcr", &[]),
    ("quay.io", "https://quay.io", "quay", &[]),
    ("gcr.io", "https://gcr.io", "gcr", &[]),
    ("registry.k8s.io", "https://registry.k8s.io", "k8s", &[]),
    ("k8s.gcr.io", "https://k8s.gcr.io", "k8s-gcr", &[]),
    ("public.ecr.aws", "https://public.ecr.aws", "ecr", &[]),
    ("mcr.microsoft.com", "https://mcr.microsoft.com", "mcr", &[]),
    (
        "docker.cloudsmith.io",
        "https://docker.cloudsmith.io",
        "cloudsmith",
        &[],
    ),
    ("nvcr.io", "https://nvcr.io", "nvcr", &["authn.nvidia.com"]),
];

/// The built-in upstreams in raw form; Docker Hub is the default and adds
/// `library/` to single-segment names.
pub(super) fn upstreams() -> Vec<RawUpstream> {
    BUILTIN
        .iter()
        .map(|(name, url, prefix, realms)| {
            let hub = *name == "docker.io";
            RawUpstream {
                name: Some((*name).to_owned()),
                url: Some((*url).to_owned()),
                default: Some(hub),
                auto_library: Some(hub),
                host_prefix: Some((*prefix).to_owned()),
                realm_hosts: Some(realms.iter().map(|r| (*r).to_owned()).collect()),
                ..RawUpstream::default()
            }
        })
        .collect()
}
