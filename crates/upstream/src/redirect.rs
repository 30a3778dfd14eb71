//! Which redirects an upstream may send berth on. Manifests, tag lists and
//! referrers stay on the upstream's own origin. Blobs may go to another host
//! (registries hand them to CDNs; the digest protects their content), but a
//! public upstream may not send berth to a loopback, link-local or private
//! address, named by an IP literal or by a host that resolves there: that
//! would let it reach services beside berth. An upstream on a private
//! network (`private_network`, set in the config or an internal IP literal
//! in its URL; never inferred from DNS) may, but no redirect ever reaches
//! one of berth's own listeners: neither by what the target resolves to,
//! nor by the address the connection actually reached.

use crate::UpstreamError;
use berth_config::canonical_ip as canonical;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

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

/// Where berth itself listens (public, admin and redirect listeners): no
/// redirect may lead there, whatever the upstream. The app adds each
/// address once it is bound; the upstream clients built before and after
/// share one list.
#[derive(Debug, Clone, Default)]
pub struct OwnListeners(Arc<RwLock<Vec<SocketAddr>>>);

impl OwnListeners {
    /// Note a bound listener.
    pub fn add(&self, addr: SocketAddr) {
        let mut all = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.push(SocketAddr::new(canonical(addr.ip()), addr.port()));
    }

    /// Whether a connection to `target` would reach one of berth's own
    /// listeners: the same port on the address it is bound to, or on any
    /// address of this host when it is bound to every interface.
    pub fn is_own(&self, target: SocketAddr) -> bool {
        let ip = canonical(target.ip());
        let all = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .filter(|l| l.port() == target.port())
            .any(|l| l.ip() == ip || (l.ip().is_unspecified() && is_this_host(ip)))
    }
}

/// Whether `ip` belongs to this host: loopback, unspecified (which
/// connects to this host), or an address a socket can be bound to here.
fn is_this_host(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The rule for one cross-origin redirect hop for a `kind` request, from
/// an upstream on a private network or not, to a host that stands for
/// `target` addresses on `port`. `Err` says why the hop is refused.
pub(super) fn hop_allowed(
    kind: &str,
    private_network: bool,
    own: &OwnListeners,
    port: u16,
    target: &[IpAddr],
) -> Result<(), String> {
    if kind != "blob" {
        return Err(format!(
            "{kind} redirected to another origin; only blobs may be fetched elsewhere"
        ));
    }
    if let Some(ip) = target
        .iter()
        .find(|ip| own.is_own(SocketAddr::new(**ip, port)))
    {
        return Err(format!(
            "blob redirected to berth's own listener at {}",
            SocketAddr::new(*ip, port)
        ));
    }
    if private_network {
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

/// Check a cross-origin hop to `target` for a `kind` request, before it is
/// made. What the connection really reached is checked again on the
/// answer (`reached_own`), so a name that changes its answer in between
/// gains nothing.
pub(super) async fn check_hop(
    upstream: &str,
    kind: &str,
    private_network: bool,
    own: &OwnListeners,
    target: &url::Url,
) -> Result<(), UpstreamError> {
    let ips = if kind == "blob" {
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
    let port = target.port_or_known_default().unwrap_or(0);
    hop_allowed(kind, private_network, own, port, &ips).map_err(|detail| UpstreamError::Invalid {
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
        let none = OwnListeners::default();
        let public = [ip("203.0.114.7")];
        let metadata = [ip("169.254.169.254")];
        // Manifests, tag lists and referrers stay on the upstream's origin.
        for kind in ["manifest", "tags", "referrers"] {
            assert!(
                hop_allowed(kind, false, &none, 80, &public).is_err(),
                "{kind}"
            );
            assert!(
                hop_allowed(kind, true, &none, 80, &public).is_err(),
                "{kind}"
            );
        }
        // Blobs go to CDNs, but a public upstream cannot send berth inside.
        assert!(hop_allowed("blob", false, &none, 443, &public).is_ok());
        assert!(hop_allowed("blob", false, &none, 80, &metadata).is_err());
        assert!(hop_allowed("blob", false, &none, 80, &[public[0], ip("10.0.0.1")]).is_err());
        assert!(hop_allowed("blob", false, &none, 80, &[ip("::1")]).is_err());
        // An upstream on a private network may redirect inside...
        assert!(hop_allowed("blob", true, &none, 80, &metadata).is_ok());
        // ...but never to berth's own listeners.
        let own = OwnListeners::default();
        own.add("0.0.0.0:5000".parse().unwrap());
        own.add("127.0.0.1:5001".parse().unwrap());
        for (target, port) in [
            ("127.0.0.1", 5000),
            ("127.3.4.5", 5000),
            ("::ffff:127.0.0.1", 5001),
            ("0.0.0.0", 5000),
        ] {
            let hop = hop_allowed("blob", true, &own, port, &[ip(target)]);
            assert!(
                hop.is_err_and(|e| e.contains("own listener")),
                "{target}:{port}"
            );
        }
        assert!(hop_allowed("blob", true, &own, 5002, &[ip("127.0.0.1")]).is_ok());
        assert!(hop_allowed("blob", true, &own, 5001, &[ip("127.0.0.2")]).is_ok());
        assert!(hop_allowed("blob", false, &own, 5000, &public).is_ok());
    }

    #[tokio::test]
    async fn hosts_are_judged_by_what_they_resolve_to() {
        let none = OwnListeners::default();
        let url = |s: &str| url::Url::parse(s).unwrap();
        // From a public upstream, a blob may not go to a name for loopback.
        let hop = check_hop("a.io", "blob", false, &none, &url("http://localhost:9/x")).await;
        assert!(
            matches!(&hop, Err(UpstreamError::Invalid { detail, .. }) if detail.contains("internal address")),
            "{hop:?}"
        );
        for target in ["http://[::ffff:10.0.0.1]/x", "http://2130706433/x"] {
            assert!(
                check_hop("a.io", "blob", false, &none, &url(target))
                    .await
                    .is_err(),
                "{target}"
            );
        }
        assert!(
            check_hop("a.io", "blob", false, &none, &url("http://203.0.114.7/x"))
                .await
                .is_ok()
        );
        assert!(
            check_hop("a.io", "blob", true, &none, &url("http://localhost:9/x"))
                .await
                .is_ok()
        );
        assert!(
            check_hop(
                "a.io",
                "manifest",
                true,
                &none,
                &url("http://localhost:9/x")
            )
            .await
            .is_err()
        );
        // A name for berth's own listener is refused even to a private upstream.
        let own = OwnListeners::default();
        own.add("127.0.0.1:9".parse().unwrap());
        let hop = check_hop("a.io", "blob", true, &own, &url("http://localhost:9/x")).await;
        assert!(
            matches!(&hop, Err(UpstreamError::Invalid { detail, .. }) if detail.contains("own listener")),
            "{hop:?}"
        );
    }

    #[tokio::test]
    async fn the_public_resolver_hands_out_no_internal_address() {
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        assert!(PublicOnly.resolve(name("localhost")).await.is_err());
    }
}
