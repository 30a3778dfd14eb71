//! The public registries berth knows without any configuration, and how
//! the file's `[[upstreams]]` combine with them: an entry named like a
//! built-in overrides only the keys it sets.

use crate::file::{RawConfig, RawUpstream};

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
fn upstreams() -> Vec<RawUpstream> {
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

/// One upstream before validation: the keys the file (or a seed variable
/// standing in for it) set, over the built-in of the same name if any.
#[derive(Debug, Clone)]
pub(super) struct UpstreamEntry {
    /// How errors name it: `upstreams[2]`, or `(built-in ghcr.io)`.
    pub(super) key: String,
    /// The keys as written in the file (none, for a built-in the file
    /// does not name).
    pub(super) written: RawUpstream,
    /// The built-in it refines, if its name is a built-in's.
    pub(super) builtin: Option<RawUpstream>,
}

impl UpstreamEntry {
    /// The keys in force: the written ones, the built-in's for the rest.
    pub(super) fn effective(&self) -> RawUpstream {
        match &self.builtin {
            Some(b) => overlay(self.written.clone(), b.clone()),
            None => self.written.clone(),
        }
    }
}

/// The built-ins (unless `builtin_upstreams = false`) and the file's
/// entries, in that order; a file entry with a built-in's name takes the
/// built-in's place. When the file names a default, no built-in is one.
pub(super) fn entries(raw: &RawConfig) -> Vec<UpstreamEntry> {
    let file_default = raw.upstreams.iter().any(|u| u.default == Some(true));
    let written_at = |name: &Option<String>| raw.upstreams.iter().position(|u| &u.name == name);
    let mut entries = Vec::new();
    let mut refined = Vec::new();
    if raw.builtin_upstreams.unwrap_or(true) {
        for mut b in upstreams() {
            if file_default {
                b.default = Some(false);
            }
            let name = b.name.clone().unwrap_or_default();
            entries.push(match written_at(&b.name) {
                Some(i) => {
                    refined.push(i);
                    UpstreamEntry {
                        key: format!("upstreams[{i}]"),
                        written: raw.upstreams[i].clone(),
                        builtin: Some(b),
                    }
                }
                None => UpstreamEntry {
                    key: format!("(built-in {name})"),
                    written: RawUpstream::default(),
                    builtin: Some(b),
                },
            });
        }
    }
    for (i, u) in raw.upstreams.iter().enumerate() {
        if !refined.contains(&i) {
            entries.push(UpstreamEntry {
                key: format!("upstreams[{i}]"),
                written: u.clone(),
                builtin: None,
            });
        }
    }
    entries
}

/// Each key of `top` that is set, else `below`'s. Destructuring names every
/// field, so a key added to [`RawUpstream`] cannot be forgotten here.
macro_rules! overlay_fields {
    ($top:ident, $below:ident; $($field:ident),* $(,)?) => {{
        let RawUpstream { $($field),* } = $top;
        RawUpstream { $($field: $field.or($below.$field)),* }
    }};
}

fn overlay(top: RawUpstream, below: RawUpstream) -> RawUpstream {
    overlay_fields!(top, below;
        name, url, default, auto_library, host_prefix, aliases, realm_hosts,
        username, password, password_file, auth_mode, push, private_network,
        tag_ttl, list_ttl, max_blob_size, unattended_fills, mirrors,
        connect_timeout, header_timeout, idle_timeout, retries, max_concurrent,
        queue_timeout, stale_on_not_found, not_found_ttl, manifest_timeout,
        request_deadline, eager_layers, prefetch_platforms,
    )
}
