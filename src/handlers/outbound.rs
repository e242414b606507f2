//! Outbound HTTP safety: which addresses a handler may reach, the `http` handler's client,
//! capped reply reads and URLs fit for messages.
//!
//! The address check runs **inside the client's DNS resolver**: the resolver looks the
//! name up, refuses the whole answer when any address is loopback, private, link-local,
//! metadata or otherwise not public, and hands the connector exactly the addresses it
//! checked. There is no second lookup between the check and the connect, so a name that
//! answers differently the second time (DNS rebinding) cannot slip through. IP literals
//! never reach a resolver and are checked before the request is built.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use regex::Regex;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Most bytes read from an outbound reply (an `http` handler receiver, an LLM API): 1 MiB,
/// like command output.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// Why an address may not be reached, or `None` when it is a public unicast address.
pub fn refused_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "a loopback address",
        (169, 254, _) => "a link-local or cloud metadata address",
        _ if ip.is_private() => "a private address",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (0, _, _) => "an unspecified (\"this network\") address",
        (192, 0, 0) | (198, 18..=19, _) => "a reserved address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    // IPv4-mapped `::ffff:a.b.c.d` is judged as IPv4.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let seg = ip.segments();
    // NAT64 and 6to4 reach IPv4 through a translator or relay, which may sit inside the
    // network and reach its private addresses: refused whatever address they embed.
    if seg[0] == 0x64 && seg[1] == 0xff9b && (seg[2..6] == [0; 4] || seg[2] == 1) {
        return Some("a NAT64 address (64:ff9b::/96, 64:ff9b:1::/48)");
    }
    Some(match seg[0] {
        0x2002 => "a 6to4 address (2002::/16)",
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "an unspecified address",
        // IPv4-compatible `::a.b.c.d` (deprecated) and the rest of ::/96.
        0 if seg[1..6] == [0; 5] => "a reserved address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xfc00..=0xfdff => "a private (unique local) address",
        0xff00..=0xffff => "a multicast address",
        0x2001 if seg[1] == 0x0db8 => "a documentation address",
        _ => return None,
    })
}

/// A destination the address policy refused; the message names the setting that allows it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{host} resolves to {addr}, {reason}; the http handler only reaches public addresses \
     (set HTTP_HANDLER_ALLOW_PRIVATE=1 to allow private ones)"
)]
pub struct Refused {
    /// The host name or literal of the URL.
    pub host: String,
    /// The first offending address.
    pub addr: IpAddr,
    /// What kind of address it is.
    pub reason: &'static str,
}

/// Checks every address of `host`; one non-public address refuses them all.
pub fn check_addrs(host: &str, addrs: &[SocketAddr]) -> Result<(), Refused> {
    for a in addrs {
        if let Some(reason) = refused_reason(a.ip()) {
            return Err(Refused {
                host: host.to_owned(),
                addr: a.ip(),
                reason,
            });
        }
    }
    Ok(())
}

/// Refuses a URL whose host is a non-public IP literal (names are checked by the resolver).
pub fn check_literal(url: &reqwest::Url) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default();
    let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
        return Ok(());
    };
    check_addrs(&ip.to_string(), &[SocketAddr::new(ip, 0)])
}

/// A resolver that answers only with public addresses.
#[derive(Debug, Default)]
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            check_addrs(&host, &addrs)?;
            // The connector gets exactly the addresses checked above.
            let checked: Addrs = Box::new(addrs.into_iter());
            Ok(checked)
        })
    }
}

/// The `http` handler's client: no redirects, no proxies from the environment, and unless
/// `allow_private`, only public destinations.
pub fn handler_client(allow_private: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the name itself, out of the policy's reach.
        .no_proxy();
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnlyResolver))
    };
    builder.build().unwrap_or_else(|e| {
        // Only a broken TLS backend makes this fail; a client without our settings would be
        // unsafe, so fall back to one that can reach nothing.
        tracing::error!(error = %e, "cannot build the http handler's client");
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnlyResolver))
            .build()
            .unwrap_or_default()
    })
}

/// The policy refusal somewhere in a request error's cause chain, if that is why it failed.
pub fn refusal(err: &reqwest::Error) -> Option<&Refused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        cause = e.source();
    }
    None
}

/// A reply body that could not be read within its cap.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// More than `cap` bytes arrived; reading stopped there.
    #[error("the reply is larger than {cap} bytes")]
    TooLarge {
        /// The cap that was exceeded.
        cap: usize,
    },
    /// The connection failed or timed out while reading.
    #[error("reading the reply failed: {0}")]
    Http(#[source] reqwest::Error),
}

/// Reads a reply body, keeping at most `cap` bytes and failing as soon as there are more.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge { cap });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| ReadError::Http(e.without_url()))? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `text` with the user-info of every URL in it (`scheme://user:password@`) redacted.
pub fn scrub_url_credentials(text: &str) -> String {
    static USERINFO: LazyLock<Regex> = LazyLock::new(|| {
        // A fixed pattern, so building it cannot fail at run time.
        Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@]+@").expect("a valid fixed pattern")
    });
    USERINFO.replace_all(text, "${1}[redacted]@").into_owned()
}

/// A URL fit for messages and logs: user name, password, query and fragment removed.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        refused_reason(s.parse().unwrap())
    }

    #[test]
    fn refuses_every_non_public_range() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            "2002:7f00:1::1",
            "2002:808:808::1",
            "::7f00:1",
            "2001:db8::1",
        ] {
            assert!(reason(ip).is_some(), "{ip} should be refused");
        }
        assert_eq!(
            reason("169.254.169.254"),
            Some("a link-local or cloud metadata address")
        );
        assert_eq!(reason("::ffff:10.0.0.1"), Some("a private address"));
    }

    #[test]
    fn allows_public_addresses() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b:2::1",
            "2003::1",
        ] {
            assert_eq!(reason(ip), None, "{ip} should be allowed");
        }
    }

    #[test]
    fn one_bad_address_refuses_the_name() {
        let addrs: Vec<SocketAddr> = vec!["8.8.8.8:0".parse().unwrap(), "10.0.0.1:0".parse().unwrap()];
        let err = check_addrs("mixed.example", &addrs).unwrap_err();
        assert_eq!(err.addr, "10.0.0.1".parse::<IpAddr>().unwrap());
        let msg = err.to_string();
        assert!(
            msg.contains("mixed.example") && msg.contains("HTTP_HANDLER_ALLOW_PRIVATE=1"),
            "{msg}"
        );
        assert!(check_addrs("ok.example", &addrs[..1]).is_ok());
    }

    #[test]
    fn literals_are_checked_names_are_left_to_the_resolver() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(check_literal(&url("http://127.0.0.1:8080/x")).is_err());
        assert!(check_literal(&url("http://[::1]/x")).is_err());
        assert!(check_literal(&url("http://169.254.169.254/latest/meta-data")).is_err());
        // Other spellings of loopback are normalised by the URL parser, then refused.
        for odd in [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            assert!(check_literal(&url(odd)).is_err(), "{odd}");
        }
        assert!(check_literal(&url("https://8.8.8.8/")).is_ok());
        assert!(check_literal(&url("https://example.com/")).is_ok());
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_loopback() {
        let name: Name = "localhost".parse().unwrap();
        let err = match PublicOnlyResolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        let refused = err.downcast_ref::<Refused>().expect("a Refused error");
        assert_eq!(refused.host, "localhost");
        assert!(refused.addr.is_loopback(), "{refused}");
    }

    #[test]
    fn credentials_in_free_text_are_redacted() {
        assert_eq!(
            scrub_url_credentials("push to https://bob:s3cret@git.example/x failed; see http://h/a@b"),
            "push to https://[redacted]@git.example/x failed; see http://h/a@b"
        );
        assert_eq!(scrub_url_credentials("postgres://u@db/x"), "postgres://[redacted]@db/x");
        assert_eq!(scrub_url_credentials("no urls here"), "no urls here");
    }

    #[test]
    fn urls_in_messages_lose_credentials_and_query() {
        let url = reqwest::Url::parse("https://user:pa55@example.com:8443/hook?token=abc#frag").unwrap();
        assert_eq!(display_url(&url), "https://example.com:8443/hook");
    }
}
