//! Repository names as a person types them on the command line (`nginx`,
//! `team/app`, `library/*`), turned into the store's `upstream/repository`
//! form the way a pull would route them: a name whose first segment is an
//! upstream (or one of its aliases) is that upstream's, any other belongs
//! to the default upstream, with `library/` before a single segment where
//! that upstream adds it.

use crate::{Config, UpstreamConfig};

impl Config {
    /// `text` (a repository name or pattern) in the store's
    /// `upstream/repository` form. A first segment with a `*` in it spans
    /// upstreams and is kept as written, as is everything when no upstream
    /// is the default.
    pub fn qualify_repository(&self, text: &str) -> String {
        qualify_repository(&self.upstreams.iter(), text)
    }
}

/// [`Config::qualify_repository`] with `upstreams` as configured (for a
/// running berth: the upstreams of the load in force).
pub fn qualify_repository<'a>(
    upstreams: &(impl Iterator<Item = &'a UpstreamConfig> + Clone),
    text: &str,
) -> String {
    let (first, rest) = match text.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (text, None),
    };
    let named = upstreams
        .clone()
        .find(|u| u.name == first || u.aliases.iter().any(|a| a == first));
    match (named, rest) {
        (Some(upstream), Some(rest)) => return format!("{}/{rest}", upstream.name),
        (Some(_), None) => return text.to_owned(),
        (None, _) if first.contains('*') => return text.to_owned(),
        (None, _) => {}
    }
    let Some(default) = upstreams.clone().find(|u| u.default) else {
        return text.to_owned();
    };
    if rest.is_none() && default.auto_library {
        format!("{}/library/{text}", default.name)
    } else {
        format!("{}/{text}", default.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::Config;

    fn config() -> Config {
        Config::from_toml(
            "[[upstreams]]\nname = \"local\"\nurl = \"http://127.0.0.1:5000\"\naliases = [\"reg.local\"]\n",
            &|_| None,
        )
        .unwrap()
    }

    #[test]
    fn short_names_mean_the_default_upstream_as_in_a_pull() {
        let c = config();
        assert_eq!(c.qualify_repository("nginx"), "docker.io/library/nginx");
        assert_eq!(c.qualify_repository("library/*"), "docker.io/library/*");
        assert_eq!(c.qualify_repository("team/medium"), "docker.io/team/medium");
    }

    #[test]
    fn upstream_names_and_aliases_are_kept_and_wildcards_span_upstreams() {
        let c = config();
        assert_eq!(c.qualify_repository("ghcr.io/org/**"), "ghcr.io/org/**");
        assert_eq!(c.qualify_repository("reg.local/team/app"), "local/team/app");
        assert_eq!(c.qualify_repository("*/library/nginx"), "*/library/nginx");
        assert_eq!(
            c.qualify_repository("docker.io/library/a"),
            "docker.io/library/a"
        );
    }
}
