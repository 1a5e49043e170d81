//! Where the deliverer may send: against server-side request forgery, a webhook must not make
//! Promptcards reach inside its own network. Loopback, private, link-local (cloud metadata at
//! 169.254.169.254), shared, multicast and reserved addresses are refused, whether written in
//! the URL or behind a name, unless the operator lists them in `WEBHOOK_ALLOWED_CIDRS`. The
//! command API checks at registration; the deliverer checks again at every attempt, on the
//! addresses it then connects to (a name can be re-pointed after registration), and never
//! follows redirects.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("must be an http:// or https:// URL ({0})")]
    NotHttp(String),
    #[error("must not carry a user name or password; sign with the webhook secret instead")]
    Credentials,
    #[error("{host} does not resolve")]
    Unresolved { host: String },
    #[error("{host} is {addr}, {kind}; webhooks may not reach inside this network (an operator can allow it with WEBHOOK_ALLOWED_CIDRS)")]
    Internal {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
}

/// The operator's exceptions to the refusal of internal addresses.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allowed: Vec<IpNet>,
}

impl TargetPolicy {
    /// Parses a comma-separated list of CIDRs (or bare addresses).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("WEBHOOK_ALLOWED_CIDRS: {item:?} is not a CIDR such as 127.0.0.0/8"))?;
            allowed.push(net);
        }
        Ok(Self { allowed })
    }

    /// `WEBHOOK_ALLOWED_CIDRS`, empty (nothing internal allowed) by default.
    pub fn from_env() -> Result<Self, String> {
        Self::parse(&service::env_or("WEBHOOK_ALLOWED_CIDRS", ""))
    }

    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// `Err` naming what the address is, when it is internal and not allowed.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), Refused> {
        let addr = canonical(addr);
        match internal_kind(addr) {
            Some(kind) if !self.allowed.iter().any(|net| net.contains(&addr)) => Err(Refused::Internal {
                host: host.to_owned(),
                addr,
                kind,
            }),
            _ => Ok(()),
        }
    }

    /// Parses the URL and checks where it points, resolving a name to every address it has:
    /// one internal address is enough to refuse it.
    pub async fn check_url(&self, url: &str) -> Result<Url, Refused> {
        let parsed = parse(url)?;
        self.resolve(&parsed).await?;
        Ok(parsed)
    }

    /// The addresses to connect to for `url`, each checked.
    pub async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, Refused> {
        let port = url.port_or_known_default().unwrap_or(443);
        let (name, addrs) = match url.host() {
            Some(Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(Host::Domain(name)) => (name.to_owned(), self.resolve_name(name, port).await?),
            None => return Err(Refused::NotHttp(url.to_string())),
        };
        for addr in &addrs {
            self.check_addr(&name, addr.ip())?;
        }
        Ok(addrs)
    }

    /// Every address of `name`, each checked; for an HTTP client's resolver.
    pub async fn resolve_name(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let unresolved = || Refused::Unresolved { host: name.to_owned() };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| unresolved())?
            .collect();
        if addrs.is_empty() {
            return Err(unresolved());
        }
        for addr in &addrs {
            self.check_addr(name, addr.ip())?;
        }
        Ok(addrs)
    }
}

/// The URL, if it is one the deliverer can send to.
pub fn parse(url: &str) -> Result<Url, Refused> {
    let parsed = Url::parse(url.trim()).map_err(|e| Refused::NotHttp(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Refused::NotHttp(format!("the scheme is {}", parsed.scheme())));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refused::Credentials);
    }
    Ok(parsed)
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is judged as the IPv4 address it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// What kind of internal address this is, or `None` for a public one.
pub fn internal_kind(addr: IpAddr) -> Option<&'static str> {
    match canonical(addr) {
        IpAddr::V4(ip) => v4_kind(ip),
        IpAddr::V6(ip) => v6_kind(ip),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address (cloud metadata lives there)")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if a == 192 && b == 0 && c == 0 {
        Some("an IETF protocol address")
    } else if a == 198 && (18..20).contains(&b) {
        Some("a benchmarking address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast or reserved address")
    } else if ip.is_documentation() {
        Some("a documentation address")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64 embeds an IPv4 address; judge that one.
        let [.., a, b] = ip.segments();
        v4_kind(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8))
    } else if first == 0x2002 {
        // 6to4 embeds an IPv4 address in its second and third groups.
        let [_, a, b, ..] = ip.segments();
        v4_kind(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8))
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("a documentation address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &TargetPolicy, addr: &str) -> bool {
        policy.check_addr("host", addr.parse().unwrap()).is_err()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        let policy = TargetPolicy::default();
        for internal in [
            "127.0.0.1",
            "127.3.2.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(refused(&policy, internal), "{internal} passed");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!refused(&policy, public), "{public} was refused");
        }
    }

    #[test]
    fn the_operator_allows_ranges_and_only_those() {
        let policy = TargetPolicy::parse("127.0.0.0/8, 10.9.0.0/16,::1").unwrap();
        assert!(!refused(&policy, "127.0.0.1"));
        assert!(!refused(&policy, "10.9.3.4"));
        assert!(!refused(&policy, "::1"));
        assert!(refused(&policy, "10.8.0.1"));
        assert!(refused(&policy, "169.254.169.254"));
        assert!(TargetPolicy::parse("localhost").is_err());
    }

    #[tokio::test]
    async fn urls_are_judged_by_what_they_point_at() {
        let policy = TargetPolicy::default();
        let refusal = policy.check_url("http://127.0.0.1:9/hook").await.unwrap_err();
        assert!(matches!(
            refusal,
            Refused::Internal {
                kind: "a loopback address",
                ..
            }
        ));
        assert!(matches!(
            policy.check_url("http://[::1]/").await,
            Err(Refused::Internal { .. })
        ));
        // A name is refused for the addresses it resolves to.
        assert!(matches!(
            policy.check_url("http://localhost:8080/").await,
            Err(Refused::Internal { .. })
        ));
        assert!(matches!(
            policy.check_url("http://169.254.169.254/latest/meta-data").await,
            Err(Refused::Internal { .. })
        ));
        assert!(matches!(
            policy.check_url("ftp://example.com/").await,
            Err(Refused::NotHttp(_))
        ));
        assert!(matches!(
            policy.check_url("https://user:pw@example.com/").await,
            Err(Refused::Credentials)
        ));
        assert!(matches!(
            policy.check_url("https://no-such-host.invalid/").await,
            Err(Refused::Unresolved { .. })
        ));
        let allowed = TargetPolicy::parse("127.0.0.0/8").unwrap();
        assert!(allowed.check_url("http://127.0.0.1:9/hook").await.is_ok());
    }
}
