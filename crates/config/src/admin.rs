//! The admin surface (`[admin]`): the listener that keeps `/metrics` and the
//! admin endpoints (cache purge and gc) off the public port, and the token
//! those endpoints ask for. Both are optional; with neither, the admin
//! endpoints are off.

use crate::Secret;
use crate::checks::Problems;
use crate::file::RawAdmin;
use std::net::SocketAddr;

/// Shortest token accepted: a guessable token on an open port is no guard.
const MIN_TOKEN_LEN: usize = 16;

/// Settings of the admin surface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// Address of the admin listener: `/metrics`, `/health` and the admin
    /// endpoints are served there and `/metrics` leaves the public port.
    pub listen: Option<SocketAddr>,
    /// Bearer token the admin endpoints require. With no listener, it
    /// puts the admin endpoints on the public port.
    pub token: Option<Secret>,
}

impl AdminSettings {
    /// Whether the admin endpoints are served at all.
    pub fn endpoints_on(&self) -> bool {
        self.listen.is_some() || self.token.is_some()
    }
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn build(
    p: &mut Problems,
    raw: Option<&RawAdmin>,
    env: Env<'_>,
    public: SocketAddr,
) -> AdminSettings {
    let raw = raw.cloned().unwrap_or_default();
    let (listen_key, listen_text) = match env("BERTH_ADMIN_LISTEN") {
        Some(text) => ("BERTH_ADMIN_LISTEN", Some(text)),
        None => ("admin.listen", raw.listen),
    };
    let listen = listen_text.as_deref().and_then(|text| {
        match text.parse::<SocketAddr>() {
            Ok(addr) if addr == public && addr.port() != 0 => {
                p.add(
                    listen_key,
                    format!("{text:?} is the public `listen` address; give the admin listener its own port"),
                );
                None
            }
            Ok(addr) => Some(addr),
            Err(e) => {
                p.add(
                    listen_key,
                    format!("{text:?} is not an address like 127.0.0.1:5090: {e}"),
                );
                None
            }
        }
    });
    let token = match (env("BERTH_ADMIN_TOKEN"), raw.token, raw.token_file) {
        (Some(token), _, _) => Some(("BERTH_ADMIN_TOKEN", token)),
        (None, Some(_), Some(_)) => {
            p.add(
                "admin.token_file",
                "set either token or token_file, not both",
            );
            None
        }
        (None, Some(token), None) => Some(("admin.token", token)),
        (None, None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(text) => Some(("admin.token_file", text.trim().to_owned())),
            Err(e) => {
                p.add("admin.token_file", format!("cannot read {file:?}: {e}"));
                None
            }
        },
        (None, None, None) => None,
    };
    let token = token.and_then(|(key, token)| {
        if token.chars().count() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            p.add(
                key,
                format!("must be at least {MIN_TOKEN_LEN} characters with no spaces, such as the output of `openssl rand -hex 24`"),
            );
            None
        } else {
            Some(Secret::new(token))
        }
    });
    // Anyone who reaches a listener off loopback could purge the cache.
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        p.add(
            "admin.token",
            format!(
                "the admin listener {addr} is not on loopback, so it needs a token (token, token_file or BERTH_ADMIN_TOKEN), such as the output of `openssl rand -hex 24`"
            ),
        );
    }
    AdminSettings { listen, token }
}
