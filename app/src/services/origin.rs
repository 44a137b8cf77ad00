//! Which `Host` and `Origin` a request may carry. Against DNS rebinding: a page at
//! `evil.example` whose name the attacker points at 127.0.0.1 reaches the dashboard from
//! the operator's browser as a same-origin page; the browser still sends
//! `Host: evil.example`, so only requests naming a served host are answered. Against
//! cross-site writes: a state-changing request whose `Origin` is not the dashboard's
//! own is refused.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method};

/// The host names the dashboard answers to.
#[derive(Debug, Clone)]
pub struct HostAllowList {
    /// Lowercase names and IP addresses (IPv6 without brackets).
    names: BTreeSet<String>,
    /// Bound to every address (0.0.0.0 or ::): any IP literal reaches it. An IP literal
    /// cannot be rebound, only a name can.
    any_address: bool,
}

/// Why a request was refused; the variants carry the offending value for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` header names a host that is not served (421 Misdirected Request).
    Host(String),
    /// A state-changing request from another origin (403 Forbidden).
    Origin(String),
}

impl HostAllowList {
    /// The bind address, the loopback names when it is a loopback or wildcard address,
    /// and `extra` (names from `--allowed-host`, checked by [`HostAllowList::parse_name`]).
    pub fn new(bind: SocketAddr, extra: &[String]) -> Self {
        let ip = bind.ip();
        let mut names: BTreeSet<String> = extra.iter().map(|n| n.to_ascii_lowercase()).collect();
        names.insert(ip.to_string());
        if ip.is_loopback() || ip.is_unspecified() {
            names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        }
        HostAllowList { names, any_address: ip.is_unspecified() }
    }

    /// A name for `--allowed-host`: a DNS name or an IP address, without port or scheme.
    pub fn parse_name(value: &str) -> Result<String, String> {
        let v = value.trim_end_matches('.').to_ascii_lowercase();
        let v = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(&v);
        if let Ok(ip) = v.parse::<IpAddr>() {
            return Ok(ip.to_string());
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !v.is_empty() && v.len() <= 253 && v.split('.').all(label_ok) {
            Ok(v.to_string())
        } else {
            Err(format!(
                "invalid host name '{value}': expected a DNS name or an IP address, without scheme, port or wildcard"
            ))
        }
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match host.parse::<IpAddr>() {
            Ok(ip) => self.any_address || self.names.contains(&ip.to_string()),
            Err(_) => self.names.contains(&host),
        }
    }

    /// Checks a request's `Host` (or the URI's authority, as HTTP/2 carries it) and, for
    /// methods that may change state, its `Origin`. A request without a host (HTTP/1.0
    /// tools) passes: browsers always send one. A write without `Origin` passes only
    /// without cookies or with `Authorization`: browsers send `Origin` on every POST, so a
    /// cookie-carrying write without one is not the dashboard's page; a client with a
    /// bearer token is not the threat (no foreign page can make a browser send one).
    pub fn check(
        &self,
        method: &Method,
        uri_authority: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let header = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let authority = header(http::header::HOST).or(uri_authority);
        if let Some(authority) = authority {
            let (host, _) = split_authority(authority);
            if !self.allows(host) {
                return Err(Refusal::Host(authority.to_string()));
            }
        }
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
        match header(http::header::ORIGIN) {
            Some(origin) if !safe && !self.same_origin(origin, authority) => {
                Err(Refusal::Origin(origin.to_string()))
            }
            // an `Authorization` header is no ambient credential: a foreign page cannot set it
            None if !safe
                && headers.contains_key(http::header::COOKIE)
                && !headers.contains_key(http::header::AUTHORIZATION) =>
            {
                Err(Refusal::Origin("none".into()))
            }
            _ => Ok(()),
        }
    }

    /// `origin` (`scheme://host[:port]`) names a served host and, when the request has a
    /// host, the same host and port (so another service on the same machine is foreign).
    fn same_origin(&self, origin: &str, authority: Option<&str>) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else { return false };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let (host, port) = split_authority(rest);
        if !self.allows(host) {
            return false;
        }
        let Some(authority) = authority else { return true };
        let (req_host, req_port) = split_authority(authority);
        normalize(host) == normalize(req_host)
            && port.unwrap_or(default_port) == req_port.unwrap_or(default_port)
    }
}

/// `host[:port]` or `[v6][:port]` -> (host without brackets, port).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

fn normalize(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.parse::<IpAddr>().map(|ip| ip.to_string()).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HOST, ORIGIN};

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), v.parse().unwrap())).collect()
    }

    fn loopback() -> HostAllowList {
        HostAllowList::new("127.0.0.1:3000".parse().unwrap(), &["carrier.example.org".into()])
    }

    #[test]
    fn loopback_binds_answer_loopback_names_and_extra_names_only() {
        let l = loopback();
        for host in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:3000",
            "carrier.example.org.",
            "127.0.0.1",
        ] {
            assert_eq!(l.check(&Method::GET, None, &headers(&[(HOST, host)])), Ok(()), "{host}");
        }
        for host in [
            "evil.example:3000",
            "127.0.0.2:3000",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]:3000",
            "",
        ] {
            assert_eq!(
                l.check(&Method::GET, None, &headers(&[(HOST, host)])),
                Err(Refusal::Host(host.into())),
                "{host}"
            );
        }
        // HTTP/2 carries the host in the URI
        assert!(l.check(&Method::GET, Some("evil.example:3000"), &HeaderMap::new()).is_err());
        assert_eq!(l.check(&Method::GET, None, &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn other_binds_answer_their_address_and_wildcards_any_address() {
        let one = HostAllowList::new("192.0.2.7:80".parse().unwrap(), &[]);
        assert!(one.allows("192.0.2.7") && !one.allows("localhost") && !one.allows("192.0.2.8"));
        let all = HostAllowList::new("0.0.0.0:80".parse().unwrap(), &[]);
        assert!(all.allows("192.0.2.8") && all.allows("::1") && all.allows("localhost"));
        assert!(!all.allows("evil.example"), "a name can be rebound, an address cannot");
    }

    #[test]
    fn writes_need_the_same_origin() {
        let l = loopback();
        let post = |host: &str, origin: &str| {
            l.check(&Method::POST, None, &headers(&[(HOST, host), (ORIGIN, origin)]))
        };
        assert_eq!(post("127.0.0.1:3000", "http://127.0.0.1:3000"), Ok(()));
        assert_eq!(post("carrier.example.org", "https://carrier.example.org"), Ok(()));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "null",
            "file://",
            "http://127.0.0.1",
        ] {
            assert_eq!(
                post("127.0.0.1:3000", origin),
                Err(Refusal::Origin(origin.into())),
                "{origin}"
            );
        }
        // reads are not checked for Origin (the browser keeps their responses from other origins)
        assert_eq!(
            l.check(
                &Method::GET,
                None,
                &headers(&[(HOST, "127.0.0.1:3000"), (ORIGIN, "http://evil.example")])
            ),
            Ok(())
        );
        // clients that send no Origin (curl, the CLI) are not browsers
        assert_eq!(l.check(&Method::POST, None, &headers(&[(HOST, "127.0.0.1:3000")])), Ok(()));
    }

    #[test]
    fn writes_with_cookies_must_name_their_origin() {
        let l = loopback();
        let cookie = (http::header::COOKIE, "carrier_session=abc");
        assert_eq!(
            l.check(&Method::POST, None, &headers(&[(HOST, "127.0.0.1:3000"), cookie.clone()])),
            Err(Refusal::Origin("none".into()))
        );
        let same = (ORIGIN, "http://127.0.0.1:3000");
        let allowed = [(HOST, "127.0.0.1:3000"), cookie.clone(), same];
        assert_eq!(l.check(&Method::POST, None, &headers(&allowed)), Ok(()));
        // reads with cookies need no Origin
        assert_eq!(
            l.check(&Method::GET, None, &headers(&[(HOST, "127.0.0.1:3000"), cookie.clone()])),
            Ok(())
        );
        // nor do writes that carry a bearer token, which no foreign page can set
        let bearer = (http::header::AUTHORIZATION, "Bearer abc");
        let with_bearer = [(HOST, "127.0.0.1:3000"), cookie, bearer];
        assert_eq!(l.check(&Method::POST, None, &headers(&with_bearer)), Ok(()));
    }

    #[test]
    fn allowed_host_names_are_checked() {
        assert_eq!(
            HostAllowList::parse_name("Carrier.Example.org."),
            Ok("carrier.example.org".into())
        );
        assert_eq!(HostAllowList::parse_name("[::1]"), Ok("::1".into()));
        for bad in ["", "*.example.org", "http://x", "host:3000", "a b", "-x.org"] {
            let err = HostAllowList::parse_name(bad).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }
}
