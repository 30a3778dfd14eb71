//! Which redirects an upstream may send berth on. Manifests, tag lists and
//! referrers stay on the upstream's own origin. Blobs may go to another host
//! (registries hand them to CDNs; the digest protects their content), but a
//! public upstream may not send berth to a loopback, link-local or private
//! address, named by an IP literal or by a host that resolves there: that
//! would let it reach services beside berth. An upstream that itself lives
//! on such an address may.

use crate::UpstreamError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Whether `ip` is not on the public internet: loopback, private,
/// link-local, shared (CGNAT), unspecified, broadcast or multicast, and
/// IPv6 unique-local, or IPv4 addresses of those kinds mapped into IPv6.
pub(super) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let first = v6.segments()[0];
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            let nat64 = v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            if nat64 {
                let [.., a, b, c, d] = v6.octets();
                return internal_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network" 0.0.0.0/8
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64.0.0/10
}

/// The rule for one redirect hop: `same_origin` as the upstream's URL,
/// whether the upstream itself is internal, and the addresses the target
/// host stands for. `Err` says why the hop is refused.
pub(super) fn hop_allowed(
    kind: &str,
    same_origin: bool,
    upstream_internal: bool,
    target: &[IpAddr],
) -> Result<(), String> {
    if same_origin {
        return Ok(());
    }
    if kind != "blob" {
        return Err(format!(
            "{kind} redirected to another origin; only blobs may be fetched elsewhere"
        ));
    }
    if upstream_internal {
        return Ok(());
    }
    match target.iter().find(|ip| is_internal(**ip)) {
        Some(ip) => Err(format!(
            "blob redirected from a public upstream to the internal address {ip}"
        )),
        None => Ok(()),
    }
}

/// The addresses `url`'s host stands for: the literal, or what it resolves to.
pub(super) async fn addresses(url: &url::Url) -> std::io::Result<Vec<IpAddr>> {
    let port = url.port_or_known_default().unwrap_or(0);
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(vec![IpAddr::V4(ip)]),
        Some(url::Host::Ipv6(ip)) => Ok(vec![IpAddr::V6(ip)]),
        Some(url::Host::Domain(host)) => Ok(tokio::net::lookup_host((host, port))
            .await?
            .map(|a| a.ip())
            .collect()),
        None => Ok(Vec::new()),
    }
}

/// Whether the upstream at `url` is internal: its host is, or resolves to,
/// an internal address. Unresolvable counts as public.
pub(super) async fn upstream_is_internal(url: &url::Url) -> bool {
    addresses(url)
        .await
        .is_ok_and(|ips| ips.into_iter().any(is_internal))
}

/// Check a cross-origin hop to `target` for a `kind` request.
pub(super) async fn check_hop(
    upstream: &str,
    kind: &str,
    upstream_internal: bool,
    target: &url::Url,
) -> Result<(), UpstreamError> {
    let ips = if kind == "blob" && !upstream_internal {
        addresses(target)
            .await
            .map_err(|e| UpstreamError::Unreachable {
                upstream: upstream.to_owned(),
                detail: format!(
                    "cannot resolve redirect host {}: {e}",
                    target.host_str().unwrap_or("")
                ),
                circuit_open_for: None,
            })?
    } else {
        Vec::new()
    };
    hop_allowed(kind, false, upstream_internal, &ips).map_err(|detail| UpstreamError::Invalid {
        upstream: upstream.to_owned(),
        detail,
    })
}

/// A resolver for the client that follows blobs away from a public
/// upstream: it never hands out internal addresses, so a host that changes
/// its answer between the check and the connection cannot slip through.
#[derive(Debug)]
pub(super) struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve as _;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses() {
        for s in [
            "127.0.0.1",
            "127.8.9.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(ip(s)), "{s}");
        }
        for s in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_internal(ip(s)), "{s}");
        }
    }

    #[test]
    fn the_redirect_rule() {
        let public = [ip("203.0.114.7")];
        let metadata = [ip("169.254.169.254")];
        // Manifests, tag lists and referrers stay on the upstream's origin.
        for kind in ["manifest", "tags", "referrers"] {
            assert!(hop_allowed(kind, true, false, &[]).is_ok());
            assert!(hop_allowed(kind, false, false, &public).is_err(), "{kind}");
            assert!(hop_allowed(kind, false, true, &public).is_err(), "{kind}");
        }
        // Blobs go to CDNs, but a public upstream cannot send berth inside.
        assert!(hop_allowed("blob", false, false, &public).is_ok());
        assert!(hop_allowed("blob", false, false, &metadata).is_err());
        assert!(hop_allowed("blob", false, false, &[public[0], ip("10.0.0.1")]).is_err());
        assert!(hop_allowed("blob", false, false, &[ip("::1")]).is_err());
        // An upstream that lives inside may redirect inside.
        assert!(hop_allowed("blob", false, true, &metadata).is_ok());
    }

    #[tokio::test]
    async fn hosts_are_judged_by_what_they_resolve_to() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(upstream_is_internal(&url("http://127.0.0.1:5000")).await);
        assert!(upstream_is_internal(&url("http://localhost:5000")).await);
        assert!(upstream_is_internal(&url("http://2130706433/")).await);
        assert!(!upstream_is_internal(&url("https://203.0.114.7")).await);
        // From a public upstream, a blob may not go to a name for loopback.
        let hop = check_hop("a.io", "blob", false, &url("http://localhost:9/x")).await;
        assert!(
            matches!(&hop, Err(UpstreamError::Invalid { detail, .. }) if detail.contains("internal address")),
            "{hop:?}"
        );
        assert!(
            check_hop("a.io", "blob", false, &url("http://[::ffff:10.0.0.1]/x"))
                .await
                .is_err()
        );
        assert!(
            check_hop("a.io", "blob", false, &url("http://203.0.114.7/x"))
                .await
                .is_ok()
        );
        assert!(
            check_hop("a.io", "blob", true, &url("http://localhost:9/x"))
                .await
                .is_ok()
        );
        assert!(
            check_hop("a.io", "manifest", true, &url("http://localhost:9/x"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_public_resolver_hands_out_no_internal_address() {
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        assert!(PublicOnly.resolve(name("localhost")).await.is_err());
    }
}
