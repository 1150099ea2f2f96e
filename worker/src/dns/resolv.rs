//! `resolv.conf`: the node's (where forwarded queries go) and the one a task gets.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::error::DnsError;

/// The resolver settings of the node, from its `/etc/resolv.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostResolvConf {
    /// The `nameserver` lines, port 53, in file order (the upstreams to forward to).
    pub nameservers: Vec<SocketAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
}

impl HostResolvConf {
    /// Reads and parses `path` (normally `/etc/resolv.conf`).
    pub fn read(path: &Path) -> Result<Self, DnsError> {
        let text = std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses the text of a `resolv.conf`. Unknown lines, comments and addresses that do not
    /// parse (e.g. IPv6 with a zone) are skipped.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        conf.nameservers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("search" | "domain") => {
                    conf.search = words
                        .take_while(|w| !w.starts_with(['#', ';']))
                        .map(str::to_owned)
                        .collect();
                }
                _ => {}
            }
        }
        conf
    }
}

/// The `resolv.conf` of a task: the embedded server, the node's search domains, and
/// `ndots:0` (as Docker writes it) so that a name is tried as given before the search list.
pub fn task_resolv_conf(search: &[String]) -> String {
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    text.push_str("nameserver 127.0.0.11\noptions ndots:0\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers_and_search() {
        let conf = HostResolvConf::parse(
            "# comment\nnameserver 10.0.0.1\nnameserver  fe80::1%eth0\nnameserver ::1\n\
             domain old.example\nsearch a.example b.example # trailing\noptions ndots:2\n\
             nameserver bogus\n",
        );
        assert_eq!(
            conf.nameservers,
            vec!["10.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(conf.search, vec!["a.example", "b.example"]);
        assert_eq!(HostResolvConf::parse(""), HostResolvConf::default());
    }

    #[test]
    fn task_file_points_at_the_embedded_server() {
        assert_eq!(
            task_resolv_conf(&["a.example".into()]),
            "search a.example\nnameserver 127.0.0.11\noptions ndots:0\n"
        );
        assert_eq!(
            task_resolv_conf(&[]),
            "nameserver 127.0.0.11\noptions ndots:0\n"
        );
    }

    #[test]
    fn missing_file_is_an_error_that_names_it() {
        let err = HostResolvConf::read(Path::new("/nonexistent/resolv.conf")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/resolv.conf"));
    }
}
