//! Which network addresses a `fhirServer` may be at: in production, only public unicast ones,
//! so that a hook call cannot make the service reach into its own network (a cloud metadata
//! endpoint, a database, an admin port) with or without an EHR's token.
//!
//! The check sits in the HTTP client's resolver ([`PublicAddressResolver`]): the addresses it
//! checks are the ones the client connects to, so a second DNS answer cannot redirect the
//! connection (DNS rebinding). A URL whose host is an IP address never reaches a resolver: it
//! is checked by [`literal_is_refused`] before any request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is public unicast: not loopback, private, link-local (cloud metadata
/// included), unique-local, shared (CGNAT), multicast, broadcast, documentation, benchmarking,
/// reserved or unspecified. IPv4 embedded in IPv6 (mapped, NAT64) is judged as IPv4.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let refused = address.is_unspecified()
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_documentation()
        || address.is_multicast()
        || a == 0
        || (a == 100 && (64..=127).contains(&b)) // shared address space (CGNAT), RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, RFC 6890
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || a >= 240; // reserved, RFC 1112
    !refused
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = address.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    let refused = address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7 (fd00:ec2::254: a metadata address)
        || (segments[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation, 2001:db8::/32
        || segments[..6] == [0, 0, 0, 0, 0, 0]; // IPv4-compatible (deprecated) and reserved
    !refused
}

/// Whether a URL's host is an IP address that is not public (a name is for the resolver).
pub fn literal_is_refused(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => !is_public_v4(v4),
        Some(url::Host::Ipv6(v6)) => !is_public_v6(v6),
        Some(url::Host::Domain(_)) | None => false,
    }
}

/// The resolver's refusal: the name resolves to at least one address that is not public.
#[derive(Debug, thiserror::Error)]
#[error("the FHIR server's name resolves to an address that is not public")]
pub struct NotPublicAddress;

/// Whether an HTTP client error is the resolver's refusal.
pub fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<NotPublicAddress>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// Resolves names with the system resolver and refuses a name if any of its addresses is not
/// public. The client connects only to the addresses returned here.
#[derive(Debug, Default)]
pub struct PublicAddressResolver;

impl Resolve for PublicAddressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addresses.is_empty() || addresses.iter().any(|address| !is_public(address.ip())) {
                return Err(Box::new(NotPublicAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().expect("an address"))
    }

    #[test]
    fn loopback_private_link_local_cgnat_and_metadata_addresses_are_not_public() {
        for address in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.10",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!public(address), "{address} is not public");
        }
    }

    #[test]
    fn ordinary_internet_addresses_are_public() {
        for address in [
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(address), "{address} is public");
        }
    }

    #[test]
    fn an_ip_literal_in_a_url_is_judged_without_a_resolver() {
        let refused = |text: &str| literal_is_refused(&url::Url::parse(text).expect("a URL"));
        assert!(refused("https://127.0.0.1:8443/fhir"));
        assert!(refused("https://169.254.169.254/latest/meta-data"));
        assert!(refused("https://[::1]/fhir"));
        assert!(refused("https://[::ffff:10.0.0.1]/fhir"));
        assert!(!refused("https://8.8.8.8/fhir"));
        assert!(!refused("https://ehr.example.org/fhir"), "a name is the resolver's to judge");
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        let name: Name = "localhost".parse().expect("a name");
        let error = match PublicAddressResolver.resolve(name).await {
            Ok(_) => panic!("localhost is refused"),
            Err(error) => error,
        };
        assert!(is_refusal(error.as_ref()));
    }
}
