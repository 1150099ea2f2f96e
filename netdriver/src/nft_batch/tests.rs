use super::*;

/// (length, type, flags, seq, family, res_id) of every message in an encoded batch.
fn messages(buf: &[u8]) -> Vec<(usize, u16, u16, u32, u8, u16)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
        let flags = u16::from_ne_bytes(buf[at + 6..at + 8].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap());
        let res = u16::from_be_bytes(buf[at + 18..at + 20].try_into().unwrap());
        out.push((len, ty, flags, seq, buf[at + 16], res));
        assert_eq!(len % 4, 0, "message at {at} is not 4-aligned: {len}");
        at += len;
    }
    assert_eq!(at, buf.len(), "messages overrun the buffer");
    out
}

#[test]
fn a_batch_is_begin_messages_end_with_the_last_acknowledged() {
    let mut b = Batch::new(2);
    b.push(MsgType::NewChain, NLM_F_CREATE, |a| {
        a.str(1, "mini_lb").str(3, "vip_10_0_0_2");
    });
    b.push(MsgType::DelRule, 0, |a| {
        a.str(1, "mini_lb");
    });
    let msgs = messages(&b.encode());
    assert_eq!(msgs.len(), 4);
    // begin and end: subsystem nf_tables in res_id, family unspecified, no ack.
    assert_eq!((msgs[0].1, msgs[0].4, msgs[0].5), (BATCH_BEGIN, 0, 10));
    assert_eq!((msgs[3].1, msgs[3].4, msgs[3].5), (BATCH_END, 0, 10));
    assert_eq!(msgs[0].2 & NLM_F_ACK, 0);
    // messages: nf_tables type, ack requested, family ip, increasing sequence numbers.
    assert_eq!(msgs[1].1, (10 << 8) | 3);
    assert_eq!(msgs[1].2, NLM_F_REQUEST | NLM_F_CREATE);
    assert_eq!(msgs[2].1, (10 << 8) | 8);
    // only the last message asks for an acknowledgement
    assert_eq!(msgs[2].2, NLM_F_REQUEST | NLM_F_ACK);
    assert_eq!((msgs[1].3, msgs[2].3), (1, 2));
    assert!(msgs[3].3 > msgs[2].3);
    assert_eq!(msgs[1].4, 2);
    // 20-byte headers + "mini_lb\0" (12 with its attribute header) + "vip_10_0_0_2\0"
    // (17, padded to 20).
    assert_eq!(msgs[1].0, 20 + 12 + 20);
    assert_eq!(b.len(), 2);
}

#[test]
fn nested_attributes_carry_their_length_and_the_nested_flag() {
    let mut buf = Vec::new();
    Attrs { buf: &mut buf }.nested(3, |a| {
        a.be32(1, 7).bytes(2, &[1, 2, 3]);
    });
    // 4 (nest header) + 8 (u32) + 4 + 3 padded to 8
    assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), 20);
    assert_eq!(u16::from_ne_bytes([buf[2], buf[3]]), 3 | NLA_F_NESTED);
    assert_eq!(&buf[8..12], &7u32.to_be_bytes());
    assert_eq!(buf.len(), 20);
}

#[test]
fn acknowledgements_and_errors_are_read_by_sequence_number() {
    let mut data = Vec::new();
    for (seq, err) in [(1u32, 0i32), (2, -(libc::ENOENT))] {
        data.extend_from_slice(&36u32.to_ne_bytes());
        data.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        data.extend_from_slice(&0u16.to_ne_bytes());
        data.extend_from_slice(&seq.to_ne_bytes());
        data.extend_from_slice(&0u32.to_ne_bytes());
        data.extend_from_slice(&err.to_ne_bytes());
        data.extend_from_slice(&[0u8; 16]); // the capped original header
    }
    assert_eq!(parse_acks(&data), vec![(1, 0), (2, libc::ENOENT)]);
    assert_eq!(
        parse_acks(&data[..20]),
        vec![],
        "a truncated message is ignored"
    );
}

#[test]
fn an_empty_batch_sends_nothing() {
    // No socket is opened (this passes without root).
    assert!(Batch::new(2).send().is_ok());
}
