//! Where jobs may send requests: allow-lists of `[scheme://]host[:port]`
//! rules, as a tenant's admin sets them (and, narrower, as a job declares).
//!
//! A rule's host is an exact name (`api.example.com`), the subdomains of a
//! name (`*.example.com`: `a.example.com` and `a.b.example.com`, not
//! `example.com` itself), an IP literal (`203.0.113.7`, `[2001:db8::1]`), or
//! `*` (any host). Without a scheme a rule allows `http` and `https`;
//! without a port, any port. Names compare case-insensitively and without a
//! trailing dot. An empty list allows nothing: egress is denied by default.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Most rules in one list. Default 256.
pub const MAX_RULES: usize = 256;
/// Longest host name (DNS's limit).
const MAX_HOST_BYTES: usize = 253;

/// A scheme a request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port a URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The hosts a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Hosts {
    Any,
    /// This name or address exactly.
    Exact(String),
    /// Names strictly below this one.
    Below(String),
}

impl Hosts {
    fn matches(&self, host: &str) -> bool {
        match self {
            Hosts::Any => true,
            Hosts::Exact(name) => name == host,
            Hosts::Below(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// The hosts both allow, if any.
    fn and(&self, other: &Hosts) -> Option<Hosts> {
        match (self, other) {
            (Hosts::Any, h) | (h, Hosts::Any) => Some(h.clone()),
            (Hosts::Exact(a), h) | (h, Hosts::Exact(a)) => h.matches(a).then(|| Hosts::Exact(a.clone())),
            (Hosts::Below(a), Hosts::Below(b)) => {
                if a == b || Hosts::Below(b.clone()).matches(a) {
                    Some(Hosts::Below(a.clone()))
                } else if Hosts::Below(a.clone()).matches(b) {
                    Some(Hosts::Below(b.clone()))
                } else {
                    None
                }
            }
        }
    }
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    scheme: Option<Scheme>,
    hosts: Hosts,
    port: Option<u16>,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid egress rule `{rule}`: {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: &'static str,
}

impl Rule {
    /// Parses `[scheme://]host[:port]`.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let error = |reason| RuleError { rule: text.chars().take(300).collect(), reason };
        let lower = text.trim().to_ascii_lowercase();
        let (scheme, rest) = match lower.split_once("://") {
            Some(("http", rest)) => (Some(Scheme::Http), rest),
            Some(("https", rest)) => (Some(Scheme::Https), rest),
            Some(_) => return Err(error("the scheme must be http or https")),
            None => (None, lower.as_str()),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(error("a rule is a host and an optional port: no path, query or user"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| error("the port must be a number from 1 to 65535"))?;
        let host = host.strip_suffix('.').unwrap_or(host);
        let hosts = if host == "*" {
            Hosts::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_name(suffix) {
                return Err(error("a wildcard is `*.` followed by a host name"));
            }
            Hosts::Below(suffix.to_owned())
        } else if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let ip: std::net::Ipv6Addr = literal.parse().map_err(|_| error("not an IPv6 address"))?;
            Hosts::Exact(ip.to_string())
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Hosts::Exact(ip.to_string())
        } else if is_name(host) {
            Hosts::Exact(host.to_owned())
        } else {
            return Err(error("not a host name: use letters, digits, `-` and `.`, at most 253 bytes"));
        };
        Ok(Rule { scheme, hosts, port })
    }

    fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.scheme.is_none_or(|s| s == scheme) && self.port.is_none_or(|p| p == port) && self.hosts.matches(host)
    }

    /// The destinations both rules allow, if any.
    fn and(&self, other: &Rule) -> Option<Rule> {
        let scheme = match (self.scheme, other.scheme) {
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => a.or(b),
        };
        let port = match (self.port, other.port) {
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => a.or(b),
        };
        Some(Rule { scheme, hosts: self.hosts.and(&other.hosts)?, port })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = self.scheme {
            write!(f, "{}://", scheme.as_str())?;
        }
        match &self.hosts {
            Hosts::Any => write!(f, "*")?,
            Hosts::Exact(host) if host.contains(':') => write!(f, "[{host}]")?,
            Hosts::Exact(host) => write!(f, "{host}")?,
            Hosts::Below(suffix) => write!(f, "*.{suffix}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// `host[:port]`, with a bracketed IPv6 host; `None` for a bad port.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    let colon = if text.starts_with('[') { text.find(']').map(|end| end + 1) } else { text.rfind(':') };
    match colon {
        Some(at) if text[at..].starts_with(':') => {
            let port: u16 = text[at + 1..].parse().ok().filter(|&p| p != 0)?;
            Some((&text[..at], Some(port)))
        }
        _ => Some((text, None)),
    }
}

/// A DNS name: labels of letters, digits and `-`, at most 253 bytes.
fn is_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_BYTES
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A list of rules: a destination is allowed if any rule allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Shared: a tenant's list is cloned into every task it runs.
    rules: Arc<[Rule]>,
}

impl AllowList {
    /// Parses every rule of `texts` (at most [`MAX_RULES`]).
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<AllowList, RuleError> {
        if texts.len() > MAX_RULES {
            return Err(RuleError { rule: format!("{} rules", texts.len()), reason: "at most 256 rules per list" });
        }
        let rules: Vec<Rule> = texts.iter().map(|t| Rule::parse(t.as_ref())).collect::<Result<_, _>>()?;
        Ok(AllowList { rules: rules.into() })
    }

    /// Whether a request to `scheme://host:port` is allowed. `host` is
    /// compared lower-cased, without a trailing dot, and IPv6 without
    /// brackets.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        let host = canonical_host(host);
        self.rules.iter().any(|rule| rule.allows(scheme, &host, port))
    }

    /// The destinations both lists allow (what a job's narrowing of its
    /// tenant's list leaves), to show; requests check each list apart
    /// ([`super::Grant::allows`]).
    pub fn and(&self, other: &AllowList) -> AllowList {
        // At most MAX_RULES² rules: the set keeps dropping duplicates linear.
        let mut seen = std::collections::HashSet::new();
        let mut rules: Vec<Rule> = Vec::new();
        for a in self.rules.iter() {
            for b in other.rules.iter() {
                if let Some(rule) = a.and(b)
                    && seen.insert(rule.clone())
                {
                    rules.push(rule);
                }
            }
        }
        AllowList { rules: rules.into() }
    }

    /// The rules, written as they parse.
    pub fn to_strings(&self) -> Vec<String> {
        self.rules.iter().map(Rule::to_string).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl serde::Serialize for AllowList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.rules.iter().map(Rule::to_string))
    }
}

impl<'de> serde::Deserialize<'de> for AllowList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        AllowList::parse(&texts).map_err(serde::de::Error::custom)
    }
}

/// `host` as rules compare it.
fn canonical_host(host: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[&str]) -> AllowList {
        AllowList::parse(rules).unwrap()
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        assert!(!AllowList::default().allows(Scheme::Https, "example.com", 443));
    }

    #[test]
    fn rules_match_host_scheme_and_port() {
        let l = list(&["api.example.com", "https://*.example.org", "http://localhost:8080", "[::1]:9000", "10.0.0.1"]);
        assert!(l.allows(Scheme::Https, "api.example.com", 443));
        assert!(l.allows(Scheme::Http, "API.Example.COM.", 8443));
        assert!(!l.allows(Scheme::Https, "example.com", 443));
        assert!(!l.allows(Scheme::Https, "evilapi.example.com", 443));
        assert!(l.allows(Scheme::Https, "a.b.example.org", 443));
        assert!(!l.allows(Scheme::Http, "a.example.org", 80), "the rule says https");
        assert!(!l.allows(Scheme::Https, "example.org", 443), "a wildcard is strictly below its name");
        assert!(!l.allows(Scheme::Https, "badexample.org", 443));
        assert!(l.allows(Scheme::Http, "localhost", 8080));
        assert!(!l.allows(Scheme::Http, "localhost", 8081));
        assert!(l.allows(Scheme::Http, "[::1]", 9000));
        assert!(l.allows(Scheme::Http, "0:0:0:0:0:0:0:1", 9000));
        assert!(l.allows(Scheme::Https, "10.0.0.1", 1));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for bad in [
            "",
            "ftp://example.com",
            "example.com/path",
            "user@example.com",
            "example.com:0",
            "example.com:70000",
            "example.com:port",
            "*example.com",
            "a.*.example.com",
            "exa mple.com",
            "[not-ipv6]",
            &"a".repeat(300),
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let many: Vec<String> = (0..=MAX_RULES).map(|i| format!("h{i}.example.com")).collect();
        assert!(AllowList::parse(&many).is_err());
    }

    #[test]
    fn a_narrowing_keeps_only_what_both_lists_allow() {
        let tenant = list(&["*.example.com", "https://api.other.net", "*:8443"]);
        let job = list(&["https://a.example.com", "*.b.example.com:443", "api.other.net", "elsewhere.io"]);
        let both = tenant.and(&job);
        assert_eq!(
            both.to_strings(),
            [
                "https://a.example.com",
                "*.b.example.com:443",
                "https://api.other.net",
                "https://a.example.com:8443",
                "api.other.net:8443",
                "elsewhere.io:8443",
            ]
        );
        for (scheme, host, port) in [
            (Scheme::Https, "a.example.com", 443),
            (Scheme::Http, "a.example.com", 443),
            (Scheme::Https, "x.b.example.com", 443),
            (Scheme::Https, "api.other.net", 443),
            (Scheme::Http, "api.other.net", 80),
            (Scheme::Https, "elsewhere.io", 8443),
            (Scheme::Https, "elsewhere.io", 443),
            (Scheme::Https, "z.example.com", 443),
        ] {
            assert_eq!(
                both.allows(scheme, host, port),
                tenant.allows(scheme, host, port) && job.allows(scheme, host, port),
                "{scheme:?}://{host}:{port}"
            );
        }
    }
}
