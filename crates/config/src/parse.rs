//! Reading the file: TOML syntax first (an error there stops), then each
//! top-level key and each `[[upstreams]]` entry on its own, so that one
//! wrong value does not hide the next. Every unknown key is reported, and
//! a value of the wrong type leaves its key unset (so no second message
//! follows from it) while the rest of its table is still read. Problems
//! come back in file order (`order`).

use crate::checks::Problems;
use crate::file::RawConfig;
use crate::{ConfigError, ConfigProblem};
use serde::de::DeserializeOwned;

/// The file's raw shape, the problems found reading it, and the key paths
/// in the order the file gives them.
pub(super) struct Parsed {
    pub(super) raw: RawConfig,
    pub(super) problems: Problems,
    pub(super) order: Vec<String>,
}

/// Parse TOML text. Only a syntax error is returned as an error.
pub(super) fn parse(text: &str) -> Result<Parsed, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::one("(file)", e.to_string().trim().to_owned())
    })?;
    let mut order = Vec::new();
    key_paths("", &toml::Value::Table(table.clone()), &mut order);
    let mut p = Problems::default();
    let mut raw = RawConfig::default();
    for (key, value) in table {
        let p = &mut p;
        let k = key.as_str();
        match k {
            "listen" => raw.listen = field(p, k, value),
            "data_dir" => raw.data_dir = field(p, k, value),
            "domain" => raw.domain = field(p, k, value),
            "url302" => raw.url302 = field(p, k, value),
            "shutdown_grace" => raw.shutdown_grace = field(p, k, value),
            "log_format" => raw.log_format = field(p, k, value),
            "log_level" => raw.log_level = field(p, k, value),
            "builtin_upstreams" => raw.builtin_upstreams = field(p, k, value),
            "server" => raw.server = field(p, k, value),
            "cache" => raw.cache = field(p, k, value),
            "storage" => raw.storage = field(p, k, value),
            "cluster" => raw.cluster = field(p, k, value),
            "admin" => raw.admin = field(p, k, value),
            "tls" => raw.tls = field(p, k, value),
            "auth" => raw.auth = field(p, k, value),
            "limits" => raw.limits = field(p, k, value),
            "access" => raw.access = field(p, k, value),
            "upstreams" => match value {
                toml::Value::Array(entries) => {
                    raw.upstreams = entries
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, entry)| field(p, &format!("upstreams[{i}]"), entry))
                        .collect();
                }
                _ => p.add(k, "must be a list of [[upstreams]] tables"),
            },
            _ => p.add(k, "unknown key"),
        }
    }
    Ok(Parsed {
        raw,
        problems: p,
        order,
    })
}

/// `value` as a `T`: every key `T` does not know is a problem under
/// `path`, and so is a wrong type. A table with a wrong type in it is read
/// again without that key, so that its other keys are still checked (the
/// key stays unset, so no second message follows from it); `None` when
/// nothing readable is left.
fn field<T: DeserializeOwned>(p: &mut Problems, path: &str, value: toml::Value) -> Option<T> {
    let mut value = value;
    let mut unknown: Vec<String> = Vec::new();
    let read = loop {
        let mut note = |at: serde_ignored::Path<'_>| {
            let at = at.to_string();
            if !unknown.contains(&at) {
                unknown.push(at);
            }
        };
        let de = serde_ignored::Deserializer::new(value.clone(), &mut note);
        let result: Result<T, _> = serde_path_to_error::deserialize(de);
        match result {
            Ok(v) => break Some(v),
            Err(e) => {
                let at = e.path().to_string();
                p.add(join(path, &at), first_line(&e.inner().to_string()));
                let key = at.split(['.', '[']).next().unwrap_or_default();
                let removed = match &mut value {
                    toml::Value::Table(table) => table.remove(key).is_some(),
                    _ => false,
                };
                if !removed {
                    break None;
                }
            }
        }
    };
    for at in unknown {
        p.add(join(path, &at), "unknown key");
    }
    read
}

/// A deserializer's message without what it appends on later lines (the
/// key again, which the problem already names).
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

/// `path` and a path below it as one dotted key.
fn join(path: &str, below: &str) -> String {
    match below {
        "" | "." | "?" => path.to_owned(),
        b if path.is_empty() => b.to_owned(),
        b if b.starts_with('[') => format!("{path}{b}"),
        b => format!("{path}.{b}"),
    }
}

/// Every key path of `value`, parents first, in file order
/// (`upstreams[1].url`).
fn key_paths(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let path = join(prefix, key);
                out.push(path.clone());
                key_paths(&path, v, out);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                out.push(path.clone());
                key_paths(&path, v, out);
            }
        }
        _ => {}
    }
}

/// Put `problems` in file order: by where the longest key path they name
/// stands in `order`; problems of no key in the file (environment
/// variables, built-in upstreams) keep their place after those. Each
/// problem is listed once.
pub(super) fn in_file_order(problems: Vec<ConfigProblem>, order: &[String]) -> Vec<ConfigProblem> {
    let rank = |key: &str| {
        let mut best = None;
        for (i, path) in order.iter().enumerate() {
            let within = key == path
                || key
                    .strip_prefix(path.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
            if within && best.is_none_or(|(_, len)| path.len() > len) {
                best = Some((i, path.len()));
            }
        }
        best.map_or(usize::MAX, |(i, _)| i)
    };
    let mut ranked: Vec<(usize, ConfigProblem)> = Vec::new();
    for problem in problems {
        if !ranked.iter().any(|(_, seen)| seen == &problem) {
            ranked.push((rank(&problem.key), problem));
        }
    }
    ranked.sort_by_key(|(r, _)| *r);
    ranked.into_iter().map(|(_, p)| p).collect()
}
