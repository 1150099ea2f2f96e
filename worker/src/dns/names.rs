//! The names a task can resolve, indexed from the endpoint table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use crate::gossip::EndpointTable;

/// Where the embedded DNS server looks names up.
///
/// `name` is already normalized: lowercase, no trailing dot, search domain removed.
/// `networks` are the ids of the overlay networks the asking task is attached to; only
/// endpoints on those networks may answer. An empty result means "no such name here".
pub trait Names: Send + Sync + 'static {
    /// The IPv4 addresses `name` stands for on `networks`, sorted and without duplicates.
    fn lookup(&self, networks: &[String], name: &str) -> Vec<Ipv4Addr>;
}

/// Every cluster name of every network, built from a snapshot of the [`EndpointTable`].
///
/// Build a new index when the table changes and hand it to every server
/// ([`DnsServer::set_names`](super::DnsServer::set_names)); one index serves all the
/// sandboxes of a node. Only live (not deleted) records count.
///
/// A name is looked for in this order, the first kind that has addresses on the asking task's
/// networks wins (so a task named like a service cannot hijack the service's name):
/// 1. `<service>`: the service's VIP on that network; a service without VIP (endpoint mode
///    `dnsrr`) resolves to every task IP instead;
/// 2. `tasks.<service>`: every task IP of the service;
/// 3. `<task name>` (`service.slot.taskid`): the task's IP;
/// 4. an alias: the VIPs of the services carrying it (a service alias, as Docker's), the IPs
///    of the tasks carrying it when their service has no VIP.
#[derive(Clone, Debug, Default)]
pub struct NameIndex {
    /// One map per kind, in lookup order; name → (network, address) pairs.
    kinds: [HashMap<String, Vec<(String, Ipv4Addr)>>; 4],
}

/// A service's VIPs and task IPs on one network.
type ServiceAddrs = (BTreeSet<Ipv4Addr>, BTreeSet<Ipv4Addr>);

const SERVICE: usize = 0;
const TASKS: usize = 1;
const TASK: usize = 2;
const ALIAS: usize = 3;

impl NameIndex {
    /// An index that knows no name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes every live record of `table`.
    pub fn from_table(table: &EndpointTable) -> Self {
        let mut index = NameIndex::new();
        // (network, service) → (VIPs, task IPs): a service answers with its VIP when one of
        // its records carries one (during an update both may be seen), else with its tasks.
        let mut services: BTreeMap<(&str, String), ServiceAddrs> = BTreeMap::new();
        for r in table.live() {
            let net = r.network_id.as_str();
            if !r.service_name.is_empty() {
                let service = r.service_name.to_ascii_lowercase();
                let entry = services.entry((net, service.clone())).or_default();
                entry.0.extend(r.vip);
                entry.1.insert(r.ip);
                index.add(TASKS, format!("tasks.{service}"), net, r.ip);
            }
            if !r.task_name.is_empty() {
                index.add(TASK, r.task_name.to_ascii_lowercase(), net, r.ip);
            }
            for alias in r.aliases.iter().filter(|a| !a.is_empty()) {
                index.add(
                    ALIAS,
                    alias.to_ascii_lowercase(),
                    net,
                    r.vip.unwrap_or(r.ip),
                );
            }
        }
        for ((net, service), (vips, ips)) in services {
            let addrs = if vips.is_empty() { ips } else { vips };
            for ip in addrs {
                index.add(SERVICE, service.clone(), net, ip);
            }
        }
        index
    }

    fn add(&mut self, kind: usize, name: String, network: &str, ip: Ipv4Addr) {
        self.kinds[kind]
            .entry(name)
            .or_default()
            .push((network.to_owned(), ip));
    }
}

impl Names for NameIndex {
    fn lookup(&self, networks: &[String], name: &str) -> Vec<Ipv4Addr> {
        for kind in &self.kinds {
            let Some(entries) = kind.get(name) else {
                continue;
            };
            let found: BTreeSet<Ipv4Addr> = entries
                .iter()
                .filter(|(net, _)| networks.iter().any(|n| n == net))
                .map(|&(_, ip)| ip)
                .collect();
            if !found.is_empty() {
                return found.into_iter().collect();
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gossip::EndpointRecord;

    /// A live record of task `task` (`service.slot.id`) of `service` on `net`.
    pub(crate) fn record(
        net: &str,
        service: &str,
        task: &str,
        ip: [u8; 4],
        vip: Option<[u8; 4]>,
    ) -> EndpointRecord {
        EndpointRecord {
            network_id: net.into(),
            endpoint_id: format!("{task}-{net}"),
            node_id: "node1".into(),
            vtep: Ipv4Addr::new(192, 168, 0, 1),
            ip: ip.into(),
            prefix_len: 24,
            mac: [2, 0x42, ip[0], ip[1], ip[2], ip[3]],
            service_id: format!("id-{service}"),
            service_name: service.into(),
            task_name: task.into(),
            vip: vip.map(Ipv4Addr::from),
            aliases: Vec::new(),
            ports: Vec::new(),
            version: 1,
            deleted: false,
            signature: Vec::new(),
        }
    }

    /// Two networks: `web` (VIP, two tasks) and `db` (dnsrr, two tasks) on `n1`; `web` again
    /// on `n2` with another VIP; a deleted task; an alias.
    pub(crate) fn sample_table() -> EndpointTable {
        let mut t = EndpointTable::new();
        t.merge(record(
            "n1",
            "web",
            "web.1.aaa",
            [10, 0, 1, 3],
            Some([10, 0, 1, 2]),
        ));
        t.merge(record(
            "n1",
            "web",
            "web.2.bbb",
            [10, 0, 1, 4],
            Some([10, 0, 1, 2]),
        ));
        let mut with_alias = record("n1", "DB", "DB.1.ccc", [10, 0, 1, 6], None);
        with_alias.aliases = vec!["Primary".into()];
        t.merge(with_alias);
        t.merge(record("n1", "DB", "DB.2.ddd", [10, 0, 1, 5], None));
        let mut gone = record("n1", "web", "web.3.eee", [10, 0, 1, 9], Some([10, 0, 1, 2]));
        gone.deleted = true;
        t.merge(gone);
        t.merge(record(
            "n2",
            "web",
            "web.1.aaa",
            [10, 0, 2, 3],
            Some([10, 0, 2, 2]),
        ));
        t.merge(record(
            "n2",
            "api",
            "api.1.fff",
            [10, 0, 2, 7],
            Some([10, 0, 2, 8]),
        ));
        t
    }

    fn ips(list: &[[u8; 4]]) -> Vec<Ipv4Addr> {
        list.iter().map(|&b| Ipv4Addr::from(b)).collect()
    }

    #[test]
    fn service_task_and_alias_names() {
        let idx = NameIndex::from_table(&sample_table());
        let n1 = ["n1".to_string()];
        assert_eq!(idx.lookup(&n1, "web"), ips(&[[10, 0, 1, 2]]), "VIP");
        assert_eq!(
            idx.lookup(&n1, "tasks.web"),
            ips(&[[10, 0, 1, 3], [10, 0, 1, 4]]),
            "live tasks only"
        );
        assert_eq!(
            idx.lookup(&n1, "db"),
            ips(&[[10, 0, 1, 5], [10, 0, 1, 6]]),
            "dnsrr"
        );
        assert_eq!(
            idx.lookup(&n1, "tasks.db"),
            ips(&[[10, 0, 1, 5], [10, 0, 1, 6]])
        );
        assert_eq!(idx.lookup(&n1, "web.2.bbb"), ips(&[[10, 0, 1, 4]]));
        assert_eq!(idx.lookup(&n1, "db.1.ccc"), ips(&[[10, 0, 1, 6]]));
        assert_eq!(idx.lookup(&n1, "primary"), ips(&[[10, 0, 1, 6]]));
        assert!(idx.lookup(&n1, "web.3.eee").is_empty(), "deleted");
        assert!(idx.lookup(&n1, "nothing").is_empty());
    }

    #[test]
    fn only_the_asking_tasks_networks_answer() {
        let idx = NameIndex::from_table(&sample_table());
        let n2 = ["n2".to_string()];
        let both = ["n1".to_string(), "n2".to_string()];
        assert_eq!(idx.lookup(&n2, "web"), ips(&[[10, 0, 2, 2]]));
        assert!(idx.lookup(&n2, "db").is_empty(), "db is not on n2");
        assert!(idx.lookup(&["n1".to_string()], "api").is_empty());
        assert_eq!(
            idx.lookup(&both, "web"),
            ips(&[[10, 0, 1, 2], [10, 0, 2, 2]])
        );
        assert!(idx.lookup(&[], "web").is_empty());
    }

    #[test]
    fn services_win_over_tasks_and_aliases() {
        let mut t = sample_table();
        let mut thief = record("n1", "other", "other.1.x", [10, 0, 1, 50], None);
        thief.aliases = vec!["web".into()];
        t.merge(thief);
        let idx = NameIndex::from_table(&t);
        assert_eq!(idx.lookup(&["n1".into()], "web"), ips(&[[10, 0, 1, 2]]));
        // On a network where the service does not exist, the alias answers.
        let mut elsewhere = record("n3", "other", "other.1.x", [10, 0, 3, 50], None);
        elsewhere.aliases = vec!["web".into()];
        t.merge(elsewhere);
        let idx = NameIndex::from_table(&t);
        assert_eq!(idx.lookup(&["n3".into()], "web"), ips(&[[10, 0, 3, 50]]));
    }

    #[test]
    fn a_service_alias_answers_with_the_services_vip() {
        // A stack's service `app_web` carries its compose name `web` as an alias.
        let mut t = EndpointTable::new();
        for (task, ip) in [
            ("app_web.1.a", [10, 0, 4, 3]),
            ("app_web.2.b", [10, 0, 4, 4]),
        ] {
            let mut r = record("n4", "app_web", task, ip, Some([10, 0, 4, 2]));
            r.aliases = vec!["web".into()];
            t.merge(r);
        }
        let idx = NameIndex::from_table(&t);
        let n4 = ["n4".to_string()];
        assert_eq!(idx.lookup(&n4, "web"), ips(&[[10, 0, 4, 2]]));
        assert_eq!(idx.lookup(&n4, "web"), idx.lookup(&n4, "app_web"));
    }
}
