//! What `berth check-config` prints by default: the keys of the effective
//! configuration whose values differ from those of an empty file (what the
//! file and the environment set), still in the file's shape so that it
//! reads back as the same configuration, and each built-in upstream left
//! as it comes in one comment line. `--full` prints every key instead
//! ([`crate::effective`]).

use crate::effective::{effective_table, upstream};
use berth_config::{Config, UpstreamConfig};
use toml::{Table, Value};

/// The keys of `now` whose values differ from those in `base`; tables are
/// compared key by key.
fn differences(now: &Table, base: &Table) -> Table {
    let mut out = Table::new();
    for (key, value) in now {
        match (value, base.get(key)) {
            (value, Some(was)) if value == was => {}
            (Value::Table(now), Some(Value::Table(was))) => {
                let inner = differences(now, was);
                if !inner.is_empty() {
                    out.insert(key.clone(), Value::Table(inner));
                }
            }
            (value, _) => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

fn upstream_table(u: &UpstreamConfig) -> Table {
    match upstream(u) {
        Value::Table(t) => t,
        _ => Table::new(),
    }
}

/// What an entry with only `u`'s name and URL would hold.
fn plain_entry(u: &UpstreamConfig) -> Table {
    let text = format!(
        "builtin_upstreams = false\n[[upstreams]]\nname = {:?}\nurl = {:?}\n",
        u.name,
        u.url.as_str()
    );
    Config::from_toml(&text, &|_| None)
        .ok()
        .and_then(|c| c.upstreams.first().map(upstream_table))
        .unwrap_or_default()
}

/// `keep` keys of `from` put first in `entry`.
fn with_keys(entry: Table, from: &Table, keep: &[&str]) -> Table {
    let mut out: Table = keep
        .iter()
        .filter_map(|k| from.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    out.extend(entry);
    out
}

/// A built-in upstream in one line.
fn summary(u: &UpstreamConfig) -> String {
    let mut notes = vec!["built-in".to_owned()];
    if u.default {
        notes.push("default".to_owned());
    }
    if let Some(prefix) = &u.host_prefix {
        notes.push(format!("host prefix {prefix}"));
    }
    if !u.aliases.is_empty() {
        notes.push(format!("aliases {}", u.aliases.join(", ")));
    }
    format!("# {} -> {} ({})", u.name, u.url, notes.join(", "))
}

/// The changed keys of `c` as TOML text, then a comment line for each
/// built-in upstream that nothing changed.
pub(crate) fn changed_toml(c: &Config) -> String {
    // The defaults always load; if not, everything counts as set.
    let Ok(defaults) = Config::embedded(&|_| None) else {
        return toml::to_string(&effective_table(c)).unwrap_or_default();
    };
    let builtins_on = defaults
        .upstreams
        .iter()
        .all(|b| c.upstream(&b.name).is_some());
    let (mut now, base) = (effective_table(c), effective_table(&defaults));
    now.remove("upstreams");
    now.remove("builtin_upstreams");
    let mut out = differences(&now, &base);
    if !builtins_on {
        out.insert("builtin_upstreams".to_owned(), Value::Boolean(false));
    }
    let mut entries = Vec::new();
    let mut unchanged = Vec::new();
    for u in &c.upstreams {
        let full = upstream_table(u);
        match defaults.upstream(&u.name).filter(|_| builtins_on) {
            Some(builtin) => {
                let changed = differences(&full, &upstream_table(builtin));
                if changed.is_empty() {
                    unchanged.push(summary(u));
                } else {
                    entries.push(Value::Table(with_keys(changed, &full, &["name"])));
                }
            }
            None => {
                let changed = differences(&full, &plain_entry(u));
                let keep = ["name", "url", "default"];
                entries.push(Value::Table(with_keys(changed, &full, &keep)));
            }
        }
    }
    if !entries.is_empty() {
        out.insert("upstreams".to_owned(), Value::Array(entries));
    }
    let mut text = toml::to_string(&out).unwrap_or_default();
    if !unchanged.is_empty() {
        text.push_str("\n# Built-in upstreams as they come (--full writes them out):\n");
        for line in unchanged {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::tests::FULL;

    /// Read back, the short printout is the same configuration.
    fn reads_back(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
        let config = Config::from_toml(text, env).unwrap();
        let printed = changed_toml(&config);
        let again =
            Config::from_toml(&printed, &|_| None).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(format!("{again:#?}"), format!("{config:#?}"), "{printed}");
        printed
    }

    #[test]
    fn the_short_printout_reads_back_as_the_same_configuration() {
        let printed = reads_back(FULL, &|_| None);
        assert!(printed.contains("name = \"lab.example\""), "{printed}");
        assert!(printed.contains("max_connections = 900"), "{printed}");
        assert!(!printed.contains("header_read_timeout"), "{printed}");
        assert!(
            printed.contains("\n# docker.io -> https://registry-1.docker.io/ (built-in, default"),
            "{printed}"
        );
        assert!(!printed.contains("builtin_upstreams"), "{printed}");
    }

    #[test]
    fn defaults_print_as_nothing_but_the_built_ins() {
        let printed = reads_back("", &|_| None);
        let settings: Vec<&str> = printed
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(settings.is_empty(), "{printed}");
        assert!(printed.lines().count() < 20, "{printed}");
    }

    #[test]
    fn a_changed_built_in_shows_only_what_changed_and_the_environment_counts() {
        let file = "[[upstreams]]\nname = \"k8s.gcr.io\"\nurl = \"http://127.0.0.1:5000\"\n";
        let printed = reads_back(file, &|_| None);
        assert_eq!(printed.matches("[[upstreams]]").count(), 1, "{printed}");
        assert!(
            printed.contains("url = \"http://127.0.0.1:5000/\""),
            "{printed}"
        );
        assert!(!printed.contains("host_prefix"), "{printed}");

        let env = |k: &str| (k == "PROXY_HOSTNAME").then(|| "registry.lab.example".to_owned());
        let printed = changed_toml(&Config::from_toml("", &env).unwrap());
        assert!(
            printed.contains("url = \"https://registry.lab.example/\""),
            "{printed}"
        );

        let own = Config::from_toml(
            "builtin_upstreams = false\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\n",
            &|_| None,
        )
        .unwrap();
        let printed = changed_toml(&own);
        assert!(
            printed.starts_with("builtin_upstreams = false"),
            "{printed}"
        );
    }
}
