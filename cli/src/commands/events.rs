//! `mini events`: Docker's event stream of swarm objects (`docker events`), served by the
//! manager the CLI talks to from its own store (see `mini_manager::events`).

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Result, bail};
use clap::Args;
use mini_proto::v1::{Event, EventFilter, EventsRequest};
use serde::Serialize;

use crate::client::connect;

/// Flags of `mini events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp (RFC 3339, Unix seconds, or a duration before
    /// now such as 10m); the manager keeps the last 1,000 events.
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// Stream events until this timestamp (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
    /// Filter output based on conditions provided: type=, event=, service=, node=, network=,
    /// secret=, config=, task=, scope= (repeatable).
    #[arg(short, long = "filter", value_parser = parse_filter)]
    filters: Vec<EventFilter>,
    /// Format output: `json` (one object per line) or `{{json .}}`.
    #[arg(long)]
    format: Option<String>,
}

/// `KEY=VALUE` of `--filter`, the key checked as the manager will.
fn parse_filter(s: &str) -> Result<EventFilter, String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!("bad format of filter (expected name=value): {s:?}"));
    };
    let filter = EventFilter {
        key: key.to_string(),
        value: value.to_string(),
    };
    mini_manager::events::Filters::parse(std::slice::from_ref(&filter))
        .map_err(|e| e.to_string())?;
    Ok(filter)
}

/// Now in Unix nanoseconds.
fn now_ns() -> i64 {
    mini_manager::events::now_ns()
}

/// Docker's `--since`/`--until` forms → Unix ns: a Unix timestamp (`1733306400`,
/// `1733306400.5`), a duration before now (`10m`, `1h30m`), an RFC 3339 time
/// (`2026-12-04T10:00:00Z`, `...T10:00:00.5+01:00`) or a date (`2026-12-04`, UTC).
fn parse_time(s: &str) -> Result<i64, String> {
    if let Some(ns) = unix_seconds(s) {
        return Ok(ns);
    }
    if let Ok(ago) = super::service_flags::parse_duration_ns(s) {
        return Ok(now_ns() - ago as i64);
    }
    rfc3339(s).ok_or_else(|| {
        format!(
            "{s:?} is not a time: use RFC 3339 (2026-12-04T10:00:00Z), Unix seconds or a \
             duration before now (10m)"
        )
    })
}

fn unix_seconds(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn rfc3339(s: &str) -> Option<i64> {
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let (y, mo, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if date.len() != 10 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    let mut nanos = 0;
    if let Some(time) = time {
        let (clock, offset) = if let Some(t) = time.strip_suffix(['Z', 'z']) {
            (t, 0)
        } else {
            let at = time.rfind(['+', '-'])?;
            let (t, off) = time.split_at(at);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':')?;
            (t, sign * (num(oh)? * 3600 + num(om)? * 60))
        };
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut hms = hms.splitn(3, ':');
        let (h, mi, sec) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        if !frac.is_empty() {
            if frac.len() > 9 {
                return None;
            }
            nanos = num(&format!("{frac:0<9}"))?;
        }
        secs += h * 3600 + mi * 60 + sec - offset;
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// `Actor` of Docker's event JSON.
#[derive(Debug, Serialize)]
struct Actor<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Attributes")]
    attributes: BTreeMap<&'a str, &'a str>,
}

/// An event as Docker's API writes it (`docker events --format '{{json .}}'`), keys in
/// Docker's order.
#[derive(Debug, Serialize)]
struct EventView<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Action")]
    action: &'a str,
    #[serde(rename = "Actor")]
    actor: Actor<'a>,
    scope: &'a str,
    time: i64,
    #[serde(rename = "timeNano")]
    time_nano: i64,
}

fn view(e: &Event) -> EventView<'_> {
    EventView {
        kind: &e.r#type,
        action: &e.action,
        actor: Actor {
            id: &e.actor_id,
            attributes: e
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        },
        scope: &e.scope,
        time: e.time_nano.div_euclid(1_000_000_000),
        time_nano: e.time_nano,
    }
}

/// Docker's text form: `2026-12-04T10:00:00.123456789Z service create ID (name=web)`.
fn text(e: &Event) -> String {
    let mut line = format!(
        "{} {} {} {}",
        super::service::rfc3339_ns(e.time_nano),
        e.r#type,
        e.action,
        e.actor_id
    );
    let v = view(e);
    if !v.actor.attributes.is_empty() {
        let attrs: Vec<String> = v
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

/// How each event is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Text,
    Json,
}

fn shape(format: Option<&str>) -> Result<Shape> {
    match format.map(str::trim) {
        None | Some("") => Ok(Shape::Text),
        Some("json") | Some("{{json .}}") => Ok(Shape::Json),
        Some(other) => bail!(
            "not supported by mini yet: --format {other:?} (events take `json` or `{{{{json .}}}}`)"
        ),
    }
}

fn render(e: &Event, shape: Shape) -> Result<String> {
    Ok(match shape {
        Shape::Text => text(e),
        Shape::Json => serde_json::to_string(&view(e))?,
    })
}

/// Runs `mini events` against the daemon at `host`: prints events until `--until` passes or
/// the user interrupts it.
pub async fn run(host: &str, args: EventsArgs) -> Result<()> {
    let shape = shape(args.format.as_deref())?;
    let (since, until) = (args.since.unwrap_or(0), args.until.unwrap_or(0));
    if until > 0 && since > until {
        bail!("--since is after --until: no event can be in between");
    }
    // Docker: --until alone shows the history up to it.
    let since = if until > 0 && since == 0 { 1 } else { since };
    let mut client = connect(host).await?;
    let mut stream = client
        .events(EventsRequest {
            since_ns: since,
            until_ns: until,
            filters: args.filters,
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(event) = stream.message().await? {
        let line = render(&event, shape)?;
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // The reader went away (`mini events | head -1`): done.
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            r#type: "service".into(),
            action: "update".into(),
            actor_id: "9x1abc".into(),
            attributes: [
                ("replicas.old".to_string(), "1".to_string()),
                ("name".to_string(), "web".to_string()),
                ("replicas.new".to_string(), "3".to_string()),
            ]
            .into(),
            scope: "swarm".into(),
            time_nano: 1_796_378_400_123_456_789,
        }
    }

    #[test]
    fn events_print_as_docker_prints_them() {
        assert_eq!(
            render(&event(), Shape::Text).unwrap(),
            "2026-12-04T10:00:00.123456789Z service update 9x1abc \
             (name=web, replicas.new=3, replicas.old=1)"
        );
        assert_eq!(
            render(&event(), Shape::Json).unwrap(),
            r#"{"Type":"service","Action":"update","Actor":{"ID":"9x1abc","Attributes":{"name":"web","replicas.new":"3","replicas.old":"1"}},"scope":"swarm","time":1796378400,"timeNano":1796378400123456789}"#
        );
        assert_eq!(shape(Some("{{json .}}")).unwrap(), Shape::Json);
        let err = shape(Some("{{.Type}}")).unwrap_err().to_string();
        assert!(err.contains("not supported by mini yet"), "{err}");
    }

    #[test]
    fn times_take_dockers_forms() {
        let t = 1_796_378_400_000_000_000;
        assert_eq!(parse_time("1796378400"), Ok(t));
        assert_eq!(parse_time("1796378400.5"), Ok(t + 500_000_000));
        assert_eq!(parse_time("2026-12-04T10:00:00Z"), Ok(t));
        assert_eq!(
            parse_time("2026-12-04T11:00:00.25+01:00"),
            Ok(t + 250_000_000)
        );
        assert_eq!(parse_time("2026-12-04"), Ok(t - 10 * 3600 * 1_000_000_000));
        let ago = parse_time("10m").unwrap();
        let expected = now_ns() - 600 * 1_000_000_000;
        assert!(
            (ago - expected).abs() < 5_000_000_000,
            "{ago} vs {expected}"
        );
        for bad in ["yesterday", "2026-13-01", "2026-12-04T25:00:00Z", "10x"] {
            assert!(parse_time(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_bad_filter_says_which_key() {
        let err = parse_filter("colour=red").unwrap_err();
        assert!(err.starts_with("invalid filter 'colour'"), "{err}");
        assert!(parse_filter("type").unwrap_err().contains("name=value"));
        assert!(parse_filter("type=service").is_ok());
        assert!(
            parse_filter("type=bogus")
                .unwrap_err()
                .contains("type=bogus")
        );
    }
}
