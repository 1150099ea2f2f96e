//! Prometheus metrics of a node's agent: gossip, embedded DNS, the tasks on this node and the
//! network driver.
//!
//! The crate owns no registry: the daemon registers one [`Metrics`] (names without the `mini_`
//! prefix, which the daemon's registry adds) and hands an `Arc` of it to the worker in
//! [`WorkerConfig`](crate::agent::WorkerConfig). `Metrics::default()` is a working, unregistered
//! set, which is what tests use.
//!
//! DNS and network-driver counters are updated where queries are answered and operations run;
//! gossip counts are read at scrape time from the running agent's own counters, and the tasks
//! gauge from the last state this node reported for each of its tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use mini_proto::v1::TaskState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::gossip::GossipProbe;

/// The node agent's metric handles. Cheap to share (`Arc`); see the module docs.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Queries and answers of the embedded DNS servers.
    pub dns: Arc<DnsMetrics>,
    /// Operations of the network driver.
    pub netdriver: mini_netdriver::Metrics,
    /// The last state this node reported for each of its tasks.
    tasks: Mutex<HashMap<String, TaskState>>,
    /// The running gossip agent's counters, once it started.
    gossip: Mutex<Option<GossipProbe>>,
}

impl Metrics {
    /// Registers every family of a node's agent in `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        self.dns.register(registry);
        self.netdriver.register(registry);
        registry.register_collector(Box::new(AgentGauges(self.clone())));
    }

    /// Records the state this node reports for `task_id`.
    pub fn task_state(&self, task_id: &str, state: TaskState) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string(), state);
    }

    /// Forgets a task this node no longer has.
    pub fn forget_task(&self, task_id: &str) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id);
    }

    /// Tasks on this node by the last state it reported.
    pub fn tasks_by_state(&self) -> BTreeMap<TaskState, usize> {
        let mut out = BTreeMap::new();
        for state in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            *out.entry(*state).or_default() += 1;
        }
        out
    }

    /// Reads the gossip families from this agent from now on (`None`: gossip stopped).
    pub fn set_gossip(&self, probe: Option<GossipProbe>) {
        *self.gossip.lock().unwrap_or_else(|e| e.into_inner()) = probe;
    }
}

/// A task state as a label value: `running`, `shutdown`, … (Docker's words).
pub fn state_label(state: TaskState) -> String {
    state
        .as_str_name()
        .trim_start_matches("TASK_STATE_")
        .to_ascii_lowercase()
}

/// Label set `[("type", record type)]`.
type TypeLabel = [(&'static str, String); 1];

/// Counters of the embedded DNS servers of every task on this node.
#[derive(Debug, Default)]
pub struct DnsMetrics {
    /// Queries received, by question type (`A`, `AAAA`, `SRV`, …).
    pub queries: Family<TypeLabel, Counter>,
    /// Answer records sent, by record type (local and forwarded replies).
    pub answers: Family<TypeLabel, Counter>,
    /// Replies with NXDOMAIN.
    pub nxdomain: Counter,
}

impl DnsMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "dns_queries",
            "Queries received by the embedded DNS servers, by question type",
            self.queries.clone(),
        );
        registry.register(
            "dns_answers",
            "Answer records sent by the embedded DNS servers, by record type",
            self.answers.clone(),
        );
        registry.register(
            "dns_nxdomain_replies",
            "Replies of the embedded DNS servers that said NXDOMAIN (no such name)",
            self.nxdomain.clone(),
        );
    }

    /// Counts a query's question type (a packet that does not parse counts nothing).
    pub fn query(&self, packet: &[u8]) {
        if let Ok(message) = Message::from_vec(packet) {
            for q in &message.queries {
                self.queries
                    .get_or_create(&[("type", q.query_type().to_string())])
                    .inc();
            }
        }
    }

    /// Counts a reply's answer records by type, and NXDOMAIN.
    pub fn reply(&self, packet: &[u8]) {
        let Ok(message) = Message::from_vec(packet) else {
            return;
        };
        if message.metadata.response_code == ResponseCode::NXDomain {
            self.nxdomain.inc();
        }
        for record in &message.answers {
            self.answers
                .get_or_create(&[("type", record.record_type().to_string())])
                .inc();
        }
    }
}

/// The gauges and counters read at scrape time.
#[derive(Debug)]
struct AgentGauges(Arc<Metrics>);

impl Collector for AgentGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tasks: Family<[(&'static str, String); 1], Gauge> = Family::default();
        for (state, n) in self.0.tasks_by_state() {
            tasks
                .get_or_create(&[("state", state_label(state))])
                .set(n as i64);
        }
        tasks.encode(encoder.encode_descriptor(
            "node_tasks",
            "Tasks on this node by the last state it reported",
            None,
            tasks.metric_type(),
        )?)?;

        let probe = self
            .0
            .gossip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(probe) = probe else {
            return Ok(());
        };
        let stats = probe.stats();
        let members = ConstGauge::new(i64::try_from(probe.members()).unwrap_or(i64::MAX));
        members.encode(encoder.encode_descriptor(
            "gossip_members",
            "Live gossip (SWIM) members other than this node",
            None,
            members.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "gossip_messages_sent",
                "Gossip UDP packets sent",
                stats.packets_sent,
            ),
            (
                "gossip_messages_received",
                "Gossip UDP packets received",
                stats.packets_received,
            ),
            (
                "gossip_messages_not_sent",
                "Gossip UDP packets the OS refused to send (full socket buffer): lost",
                stats.packets_not_sent,
            ),
            (
                "gossip_sent_bytes",
                "Gossip UDP payload bytes sent",
                stats.bytes_sent,
            ),
            (
                "gossip_received_bytes",
                "Gossip UDP payload bytes received",
                stats.bytes_received,
            ),
            (
                "gossip_suspicions_refuted",
                "Times a member suspected this node (its probe failed) and this node refuted straight back to it",
                stats.suspicions_refuted,
            ),
            (
                "gossip_decrypt_failures",
                "Gossip packets that did not open under the cluster's gossip keys (forged, corrupted, outsider, retired key)",
                stats.packets_unauthenticated,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn node_tasks_follow_the_last_reported_state_and_forget_removed_tasks() {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("mini");
        metrics.register(&mut registry);
        metrics.task_state("a", TaskState::Starting);
        metrics.task_state("a", TaskState::Running);
        metrics.task_state("b", TaskState::Running);
        metrics.task_state("c", TaskState::Failed);
        metrics.forget_task("c");
        let text = encode(&registry);
        assert!(
            text.contains("mini_node_tasks{state=\"running\"} 2\n"),
            "{text}"
        );
        assert!(
            !text.contains("state=\"starting\"") && !text.contains("state=\"failed\""),
            "{text}"
        );
        // No gossip agent yet: no gossip families.
        assert!(!text.contains("gossip"), "{text}");
    }

    #[test]
    fn dns_counts_question_and_answer_types_and_nxdomain() {
        let dns = DnsMetrics::default();
        let name = Name::from_ascii("web.").unwrap();
        let mut query = Message::new(7, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(name.clone(), RecordType::A));
        dns.query(&query.to_vec().unwrap());
        let mut reply = query.clone();
        reply.metadata.message_type = MessageType::Response;
        reply.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::A(A::new(10, 0, 0, 2)),
        ));
        reply.add_answer(Record::from_rdata(name, 60, RData::A(A::new(10, 0, 0, 3))));
        dns.reply(&reply.to_vec().unwrap());
        let mut nx = query.clone();
        nx.metadata.message_type = MessageType::Response;
        nx.metadata.response_code = ResponseCode::NXDomain;
        dns.reply(&nx.to_vec().unwrap());
        dns.query(b"garbage");
        let mut registry = Registry::with_prefix("mini");
        dns.register(&mut registry);
        let text = encode(&registry);
        for line in [
            "mini_dns_queries_total{type=\"A\"} 1\n",
            "mini_dns_answers_total{type=\"A\"} 2\n",
            "mini_dns_nxdomain_replies_total 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
