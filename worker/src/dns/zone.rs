//! The name rules: what a query name means for one sandbox (answer here, NXDOMAIN, or ask the
//! node's resolvers).

use std::net::Ipv4Addr;

use super::names::Names;

/// How one sandbox's server reads query names.
///
/// Names are case-insensitive and a trailing dot is ignored. A name is first looked up as
/// asked; then, when it ends in the cluster domain or one of the search domains, without that
/// suffix — so `web.corp.example` finds service `web` when the task's `resolv.conf` searches
/// `corp.example`, and `web.<cluster domain>` always finds it.
///
/// When nothing matches, the name is a *cluster name* — answered NXDOMAIN here, never sent out —
/// when it is in the cluster domain, or when it is a host-name lookup (A, AAAA or ANY) of a
/// single label (`web`) or of `tasks.<label>`: no upstream resolver can know those. Every other
/// name is forwarded to the node's resolvers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    /// The cluster's own domain (lowercase, no dots at the ends), if it has one.
    cluster_domain: Option<String>,
    /// The search domains of the task's `resolv.conf` (lowercase, no dots at the ends).
    search: Vec<String>,
}

/// What to do with a query name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// A cluster name: answer with these addresses (never empty).
    Local(Vec<Ipv4Addr>),
    /// A cluster name that matches nothing.
    NxDomain,
    /// Not ours: ask the node's resolvers.
    Forward,
}

impl Zone {
    /// Rules with no cluster domain and no search domain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the cluster's domain (e.g. `cluster.local`): names under it are never forwarded.
    pub fn with_cluster_domain(mut self, domain: &str) -> Self {
        self.cluster_domain = Some(clean(domain)).filter(|d| !d.is_empty());
        self
    }

    /// Sets the search domains the task's `resolv.conf` lists.
    pub fn with_search<S: AsRef<str>>(mut self, domains: &[S]) -> Self {
        self.search = domains
            .iter()
            .map(|d| clean(d.as_ref()))
            .filter(|d| !d.is_empty())
            .collect();
        self
    }

    /// Decides what `qname` (as it came in the query) means for a task on `networks`.
    /// `host_lookup` says whether the query asks for addresses (A, AAAA or ANY).
    pub(crate) fn resolve(
        &self,
        names: &dyn Names,
        networks: &[String],
        qname: &str,
        host_lookup: bool,
    ) -> Resolution {
        let name = qname
            .strip_suffix('.')
            .unwrap_or(qname)
            .to_ascii_lowercase();
        if name.is_empty() {
            return Resolution::Forward;
        }
        let suffixes = self.cluster_domain.iter().chain(&self.search);
        let candidates = std::iter::once(name.as_str())
            .chain(suffixes.filter_map(|s| name.strip_suffix(s.as_str())?.strip_suffix('.')));
        for candidate in candidates {
            let found = names.lookup(networks, candidate);
            if !found.is_empty() {
                return Resolution::Local(found);
            }
        }
        let in_cluster_domain = self
            .cluster_domain
            .as_deref()
            .is_some_and(|d| name == d || name.ends_with(&format!(".{d}")));
        let bare = match name.split_once('.') {
            None => true,
            Some(("tasks", rest)) => !rest.contains('.'),
            Some(_) => false,
        };
        if in_cluster_domain || (bare && host_lookup) {
            Resolution::NxDomain
        } else {
            Resolution::Forward
        }
    }
}

/// Lowercase, without leading or trailing dots.
fn clean(domain: &str) -> String {
    domain.trim_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::names::NameIndex;
    use crate::dns::names::tests::sample_table;

    fn zone() -> Zone {
        Zone::new()
            .with_cluster_domain("Mini.Local.")
            .with_search(&["corp.example", ""])
    }

    fn resolve(name: &str) -> Resolution {
        let idx = NameIndex::from_table(&sample_table());
        zone().resolve(&idx, &["n1".to_string()], name, true)
    }

    fn local(ip: [u8; 4]) -> Resolution {
        Resolution::Local(vec![ip.into()])
    }

    #[test]
    fn case_trailing_dot_and_suffixes() {
        assert_eq!(resolve("web"), local([10, 0, 1, 2]));
        assert_eq!(resolve("WEB."), local([10, 0, 1, 2]));
        assert_eq!(resolve("web.mini.local"), local([10, 0, 1, 2]));
        assert_eq!(resolve("Web.Corp.Example."), local([10, 0, 1, 2]));
        assert_eq!(resolve("web.2.bbb.corp.example"), local([10, 0, 1, 4]));
        assert_eq!(resolve("tasks.web.mini.local."), {
            Resolution::Local(vec![[10, 0, 1, 3].into(), [10, 0, 1, 4].into()])
        });
        assert_eq!(
            resolve("xweb.corp.example"),
            Resolution::Forward,
            "no label split"
        );
    }

    #[test]
    fn cluster_names_that_match_nothing_are_nxdomain() {
        assert_eq!(resolve("nothing"), Resolution::NxDomain);
        assert_eq!(resolve("tasks.nothing"), Resolution::NxDomain);
        assert_eq!(resolve("nothing.mini.local"), Resolution::NxDomain);
        assert_eq!(resolve("mini.local."), Resolution::NxDomain);
        assert_eq!(resolve("api"), Resolution::NxDomain, "api is on n2 only");
    }

    #[test]
    fn other_names_are_forwarded() {
        assert_eq!(resolve("example.com"), Resolution::Forward);
        assert_eq!(resolve("nothing.corp.example"), Resolution::Forward);
        assert_eq!(resolve("tasks.a.b"), Resolution::Forward);
        assert_eq!(resolve("."), Resolution::Forward);
        let idx = NameIndex::from_table(&sample_table());
        let n1 = ["n1".to_string()];
        assert_eq!(
            zone().resolve(&idx, &n1, "com", false),
            Resolution::Forward,
            "a non-address query of a bare name (e.g. com SOA) goes out"
        );
        assert_eq!(
            Zone::new().resolve(&idx, &n1, "web.mini.local", true),
            Resolution::Forward,
            "without a cluster domain"
        );
    }
}
