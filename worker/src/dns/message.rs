//! DNS messages in and out: parse a query, decide, build the reply (hickory-proto for the wire
//! format). No I/O here.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use super::names::Names;
use super::zone::{Resolution, Zone};

/// TTL of the answers from the table: 0, so that no cache (the task's, or an application's)
/// keeps an address after the task behind it moved or the service was scaled. Queries stay on
/// the sandbox's loopback and are answered from memory, so not caching costs little. (Docker
/// uses 600 s, and stale dnsrr answers are a known complaint.)
pub const TTL: u32 = 0;

/// Size of a DNS header; anything shorter is dropped unanswered.
const HEADER_LEN: usize = 12;
/// Largest UDP reply when the query has no EDNS (RFC 1035).
const PLAIN_UDP_LEN: usize = 512;
/// Largest UDP reply this server sends, whatever the query's EDNS offers (the DNS flag day 2020
/// value, which avoids IP fragmentation).
pub(crate) const MAX_UDP_LEN: usize = 1232;
/// Largest TCP message (the length prefix is 16 bits).
pub(crate) const MAX_TCP_LEN: usize = 65535;

/// What the server does with one incoming packet.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Ask the node's resolvers; the query as received.
    Forward(Forward),
    /// Ignore the packet (too short to answer, or not a query).
    Drop,
}

/// A query to forward, and what is needed to check the upstream reply or fail it.
#[derive(Debug)]
pub(crate) struct Forward {
    /// The question, to match the upstream's reply and to build SERVFAIL.
    request: Message,
}

/// The sandbox-specific inputs of [`handle`].
pub(crate) struct Context<'a> {
    pub names: &'a dyn Names,
    pub networks: &'a [String],
    pub zone: &'a Zone,
    /// Rotates the order of multi-address answers (poor man's round robin for dnsrr).
    pub rotate: usize,
}

/// Decides what to do with `packet`, received over UDP (`tcp == false`) or TCP.
pub(crate) fn handle(packet: &[u8], ctx: &Context<'_>, tcp: bool) -> Action {
    if packet.len() < HEADER_LEN {
        return Action::Drop;
    }
    // QR bit: a response sent to us is never answered (no reflection loops).
    if packet[2] & 0x80 != 0 {
        return Action::Drop;
    }
    let request = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => {
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            let mut reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            reply.metadata.recursion_available = true;
            return encode(reply).map_or(Action::Drop, Action::Reply);
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return Action::Drop;
    }
    if request.metadata.op_code != OpCode::Query {
        return reply_code(&request, ResponseCode::NotImp);
    }
    let [query] = request.queries.as_slice() else {
        return reply_code(&request, ResponseCode::FormErr);
    };
    if query.query_class() != DNSClass::IN {
        return Action::Forward(Forward { request });
    }
    let qtype = query.query_type();
    let host_lookup = matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY);
    let qname = query.name().to_ascii();
    match ctx
        .zone
        .resolve(ctx.names, ctx.networks, &qname, host_lookup)
    {
        Resolution::Forward => Action::Forward(Forward { request }),
        Resolution::NxDomain => reply_code(&request, ResponseCode::NXDomain),
        Resolution::Local(mut addrs) => {
            if !matches!(qtype, RecordType::A | RecordType::ANY) {
                // Known name, no such record: empty NOERROR, so clients asking AAAA first
                // go on with the A answer.
                addrs.clear();
            }
            let len = addrs.len().max(1);
            addrs.rotate_left(ctx.rotate % len);
            let limit = if tcp {
                MAX_TCP_LEN
            } else {
                udp_limit(&request)
            };
            answer(&request, query, &addrs, limit)
        }
    }
}

/// The SERVFAIL reply to a forwarded query no upstream answered.
pub(crate) fn servfail(forward: &Forward) -> Option<Vec<u8>> {
    encode(response(&forward.request, ResponseCode::ServFail))
}

/// Whether `reply`, from an upstream, answers the forwarded query: a response with the same id
/// and the same question.
pub(crate) fn is_reply_to(reply: &[u8], forward: &Forward) -> bool {
    let Ok(msg) = Message::from_vec(reply) else {
        return false;
    };
    msg.metadata.message_type == MessageType::Response
        && msg.metadata.id == forward.request.metadata.id
        && msg.queries == forward.request.queries
}

fn udp_limit(request: &Message) -> usize {
    request.edns.as_ref().map_or(PLAIN_UDP_LEN, |e| {
        usize::from(e.max_payload()).clamp(PLAIN_UDP_LEN, MAX_UDP_LEN)
    })
}

/// A reply header for `request`: same id, opcode, RD and CD; recursion available.
fn response(request: &Message, code: ResponseCode) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata = Metadata::response_from_request(&request.metadata);
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = code;
    reply.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_LEN as u16);
        reply.set_edns(edns);
    }
    reply
}

fn reply_code(request: &Message, code: ResponseCode) -> Action {
    let mut reply = response(request, code);
    reply.metadata.authoritative = code == ResponseCode::NXDomain;
    encode(reply).map_or(Action::Drop, Action::Reply)
}

/// An authoritative answer with one A record per address, cut to fit `limit` bytes (then
/// flagged truncated, so the client retries over TCP).
fn answer(request: &Message, query: &Query, addrs: &[Ipv4Addr], limit: usize) -> Action {
    let mut reply = response(request, ResponseCode::NoError);
    reply.metadata.authoritative = true;
    let records = addrs
        .iter()
        .map(|&ip| Record::from_rdata(query.name().clone(), TTL, RData::A(A(ip))));
    reply.add_answers(records);
    let Some(mut bytes) = encode(reply.clone()) else {
        return Action::Drop;
    };
    if bytes.len() > limit {
        // Each extra A record costs 16 bytes with a compressed name; keep what fits.
        let over = (bytes.len() - limit).div_ceil(16);
        let keep = reply.answers.len().saturating_sub(over);
        reply.answers.truncate(keep);
        reply.metadata.truncation = true;
        while let Some(b) = encode(reply.clone()) {
            if b.len() <= limit || reply.answers.is_empty() {
                bytes = b;
                break;
            }
            reply.answers.pop();
        }
    }
    Action::Reply(bytes)
}

fn encode(message: Message) -> Option<Vec<u8>> {
    message.to_vec().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::names::NameIndex;
    use crate::dns::names::tests::{record, sample_table};
    use crate::gossip::EndpointTable;
    use hickory_proto::rr::Name;

    /// A query for `name` of type `qtype`, with EDNS when `edns` is set.
    pub(crate) fn query(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn run(packet: &[u8], table: &EndpointTable, tcp: bool) -> Action {
        let idx = NameIndex::from_table(table);
        let zone = Zone::new().with_cluster_domain("mini");
        let ctx = Context {
            names: &idx,
            networks: &["n1".to_string()],
            zone: &zone,
            rotate: 0,
        };
        handle(packet, &ctx, tcp)
    }

    fn reply(packet: &[u8]) -> Message {
        match run(packet, &sample_table(), false) {
            Action::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .map(|r| match r.data {
                RData::A(A(ip)) => ip,
                ref other => panic!("not an A record: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn answers_a_records_with_the_question_echoed() {
        let m = reply(&query(7, "Tasks.Web.", RecordType::A, None));
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name().to_ascii(), "Tasks.Web.");
        assert_eq!(
            a_records(&m),
            vec![Ipv4Addr::new(10, 0, 1, 3), Ipv4Addr::new(10, 0, 1, 4)]
        );
        assert!(m.answers.iter().all(|r| r.ttl == TTL));
    }

    #[test]
    fn aaaa_of_a_known_name_is_empty_noerror_and_unknown_is_nxdomain() {
        let m = reply(&query(1, "web", RecordType::AAAA, Some(1232)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert!(m.edns.is_some(), "EDNS in, EDNS out");
        let m = reply(&query(2, "nothing.mini.", RecordType::A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
    }

    #[test]
    fn external_names_are_forwarded_and_replies_checked() {
        let Action::Forward(fwd) = run(
            &query(9, "example.com.", RecordType::A, None),
            &sample_table(),
            false,
        ) else {
            panic!("expected forward");
        };
        let fail = Message::from_vec(&servfail(&fwd).unwrap()).unwrap();
        assert_eq!(fail.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(fail.metadata.id, 9);
        let mut good = fail.clone();
        good.metadata.response_code = ResponseCode::NoError;
        assert!(is_reply_to(&good.to_vec().unwrap(), &fwd));
        let mut wrong_id = good.clone();
        wrong_id.metadata.id = 10;
        assert!(!is_reply_to(&wrong_id.to_vec().unwrap(), &fwd));
        assert!(!is_reply_to(
            &query(9, "example.com.", RecordType::A, None),
            &fwd
        ));
        assert!(!is_reply_to(b"junk", &fwd));
    }

    #[test]
    fn malformed_and_odd_packets() {
        let t = sample_table();
        assert!(matches!(run(b"", &t, false), Action::Drop));
        assert!(matches!(run(&[0u8; 11], &t, false), Action::Drop));
        // A header claiming one question that is not there: FORMERR with the id.
        let mut bad = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        match run(&bad, &t, false) {
            Action::Reply(b) => {
                let m = Message::from_vec(&b).unwrap();
                assert_eq!(m.metadata.id, 0x1234);
                assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
            }
            other => panic!("{other:?}"),
        }
        bad[2] |= 0x80; // a response: never answered
        assert!(matches!(run(&bad, &t, false), Action::Drop));
        // No question at all.
        let none = Message::new(3, MessageType::Query, OpCode::Query)
            .to_vec()
            .unwrap();
        let m = reply(&none);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // Not a standard query.
        let mut status = Message::new(4, MessageType::Query, OpCode::Status);
        status.add_query(Query::query(
            Name::from_ascii("web").unwrap(),
            RecordType::A,
        ));
        let m = reply(&status.to_vec().unwrap());
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        // Random bytes never panic.
        let mut x: u32 = 12345;
        for len in 0..600 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = run(&junk, &t, false);
        }
    }

    #[test]
    fn big_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let mut t = EndpointTable::new();
        for i in 0..200u8 {
            t.merge(record(
                "n1",
                "big",
                &format!("big.{i}.x"),
                [10, 1, 0, i],
                None,
            ));
        }
        let q = query(5, "big", RecordType::A, None);
        let Action::Reply(udp) = run(&q, &t, false) else {
            panic!()
        };
        assert!(udp.len() <= PLAIN_UDP_LEN);
        let m = Message::from_vec(&udp).unwrap();
        assert!(m.metadata.truncation && !m.answers.is_empty() && m.answers.len() < 200);
        let Action::Reply(edns) = run(&query(5, "big", RecordType::A, Some(4096)), &t, false)
        else {
            panic!()
        };
        assert!(edns.len() <= MAX_UDP_LEN && edns.len() > PLAIN_UDP_LEN);
        let Action::Reply(tcp) = run(&q, &t, true) else {
            panic!()
        };
        let m = Message::from_vec(&tcp).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 200);
    }
}
