//! The client's address: the connection's peer, unless the peer is a
//! trusted proxy, in which case the nearest untrusted address its
//! `X-Forwarded-For` names (or its `X-Real-IP`). An untrusted peer cannot
//! claim to be anyone else.

use berth_config::Network;
use http::HeaderMap;
use std::net::IpAddr;

fn trusted(ip: IpAddr, proxies: &[Network]) -> bool {
    proxies.iter().any(|n| n.contains(&ip))
}

/// The address berth treats as the client's.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[Network]) -> IpAddr {
    if !trusted(peer, proxies) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
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
        .and_then(|v| v.trim().parse().ok())
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
}
