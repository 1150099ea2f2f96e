//! The embedded DNS of each task sandbox: started when the sandbox exists,
//! fed from the gossip table, stopped with the task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mini_netdriver::Kernel;
use mini_proto::v1::Task;

use super::worker::Shared;
use crate::dns::{DnsConfig, DnsServer, HostResolvConf, NameIndex, Names, Zone, task_resolv_conf};

/// The node's DNS servers (one per task sandbox) and the name index they share.
#[derive(Default)]
pub struct NodeDns {
    servers: Mutex<HashMap<String, DnsServer>>,
    names: Mutex<Option<Arc<NameIndex>>>,
    /// No servers are started (agent tests, whose sandboxes are fakes).
    disabled: bool,
}

impl NodeDns {
    /// DNS that starts no servers: tasks still get the resolv.conf.
    #[cfg(test)]
    pub fn disabled() -> Self {
        NodeDns {
            disabled: true,
            ..Default::default()
        }
    }

    /// Hands `names` (built from the gossip table with [`NameIndex::from_table`]) to every
    /// server.
    pub fn install(&self, names: NameIndex) {
        let names = Arc::new(names);
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&names));
        for server in self
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            server.set_names(Arc::clone(&names) as Arc<dyn Names>);
        }
    }

    fn names(&self) -> Arc<dyn Names> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        names.unwrap_or_default() as Arc<dyn Names>
    }

    fn insert(&self, task_id: &str, server: DnsServer) {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string(), server);
    }

    fn remove(&self, task_id: &str) -> Option<DnsServer> {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id)
    }
}

/// Starts the DNS server of `task`'s sandbox at 127.0.0.11:53; returns the
/// contents of the task's own resolv.conf (pointing at it, with the node's
/// search domains).
pub async fn start<K: Kernel + 'static>(shared: &Shared<K>, task: &Task) -> Result<String, String> {
    let host = HostResolvConf::read("/etc/resolv.conf".as_ref())
        .unwrap_or_else(|_| HostResolvConf::parse(""));
    if shared.dns.disabled {
        return Ok(task_resolv_conf(&host.search));
    }
    let networks: Vec<String> = task.networks.iter().map(|a| a.network_id.clone()).collect();
    let config = DnsConfig::new(
        shared.network.driver().sandbox_netns_path(&task.id),
        networks,
    )
    .with_upstream(host.nameservers)
    .with_zone(Zone::new().with_search(&host.search))
    .with_metrics(shared.config.metrics.dns.clone());
    let server = DnsServer::start(config, shared.dns.names())
        .await
        .map_err(|e| e.to_string())?;
    shared.dns.insert(&task.id, server);
    Ok(task_resolv_conf(&host.search))
}

/// Stops the DNS server of a task's sandbox.
pub async fn stop<K: Kernel + 'static>(shared: &Shared<K>, task_id: &str) {
    if let Some(server) = shared.dns.remove(task_id) {
        server.stop().await;
    }
}
