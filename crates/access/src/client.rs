//! The client's address: the connection's peer, unless the peer is a
//! trusted proxy, in which case the nearest untrusted address its
//! `X-Forwarded-For` names (or its `X-Real-IP`). An untrusted peer cannot
//! claim to be anyone else. Every address is taken in its canonical form
//! (`::ffff:a.b.c.d` is `a.b.c.d`), so IPv4 rules, proxies and limits hold
//! on a dual-stack listener too.

use berth_config::{Network, canonical_ip};
use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

fn trusted(ip: IpAddr, proxies: &[Network]) -> bool {
    proxies.iter().any(|n| n.contains(&ip))
}

/// An address as a proxy may write it: `192.0.2.7`, `192.0.2.7:443`,
/// `2001:db8::1`, `[2001:db8::1]:443` or `::ffff:192.0.2.7`, canonical.
fn parse_forwarded(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(canonical_ip(ip))
}

/// The address berth treats as the client's.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[Network]) -> IpAddr {
    let peer = canonical_ip(peer);
    if !trusted(peer, proxies) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(parse_forwarded)
        .collect();
    // From the nearest hop back: the first address no trusted proxy added.
    if let Some(ip) = forwarded.iter().rev().find(|ip| !trusted(**ip, proxies)) {
        return *ip;
    }
    if let Some(first) = forwarded.first() {
        return *first;
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_forwarded)
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use http::HeaderMap;

    #[test]
    fn only_a_trusted_peer_names_the_client() {
        let proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().unwrap());
        let proxy = "10.0.0.1".parse().unwrap();
        let stranger = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &headers, &proxies).to_string(),
            "203.0.113.9"
        );
        assert_eq!(client_ip(stranger, &headers, &proxies), stranger);
        // A spoofed first entry does not win over what the proxy saw.
        headers.insert("x-forwarded-for", "1.2.3.4, 203.0.113.9".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &headers, &proxies).to_string(),
            "203.0.113.9"
        );
        let mut real = HeaderMap::new();
        real.insert("x-real-ip", "192.0.2.5".parse().unwrap());
        assert_eq!(client_ip(proxy, &real, &proxies).to_string(), "192.0.2.5");
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &proxies), proxy);
    }

    #[test]
    fn mapped_and_ported_forms_are_the_plain_address() {
        let proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let mapped_proxy = "::ffff:10.0.0.1".parse().unwrap();
        for (written, client) in [
            ("203.0.113.9:4711", "203.0.113.9"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            ("[::ffff:203.0.113.9]:80", "203.0.113.9"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("203.0.113.9, ::ffff:10.1.1.1", "203.0.113.9"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", written.parse().unwrap());
            // The proxy itself connects over a dual-stack listener.
            let ip = client_ip(mapped_proxy, &headers, &proxies);
            assert_eq!(ip.to_string(), client, "{written}");
        }
        let stranger = "::ffff:198.51.100.7".parse().unwrap();
        let ip = client_ip(stranger, &HeaderMap::new(), &proxies);
        assert_eq!(ip.to_string(), "198.51.100.7");
    }
}
