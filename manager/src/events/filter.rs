//! `mini events --filter key=value`: Docker's event filters for swarm objects.

use std::collections::BTreeMap;

use mini_proto::v1::{Event, EventFilter};

/// The keys `--filter` takes.
pub const KEYS: [&str; 9] = [
    "config", "event", "network", "node", "scope", "secret", "service", "task", "type",
];

/// Keys Docker's `events` takes that name what mini has no events for.
const DOCKER_ONLY: [&str; 6] = ["container", "daemon", "image", "label", "plugin", "volume"];

/// The event types.
pub const TYPES: [&str; 6] = ["config", "network", "node", "secret", "service", "task"];

/// A `--filter` mini does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A key Docker does not know either.
    #[error("invalid filter '{key}': events filter keys are {}", KEYS.join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// A key of Docker's that names what mini has no events for.
    #[error("not supported by mini: --filter {key} (mini has no {key} events)")]
    Unsupported {
        /// The key given.
        key: String,
    },
    /// A `type=` that is no event type.
    #[error("invalid filter 'type={value}': event types are {}", TYPES.join(", "))]
    UnknownType {
        /// The value given.
        value: String,
    },
    /// A `scope=` other than swarm or local.
    #[error("invalid filter 'scope={value}': the scope is swarm or local")]
    UnknownScope {
        /// The value given.
        value: String,
    },
}

/// Parsed filters: values of one key are ORed, keys are ANDed (Docker's rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Checks and groups the filters.
    pub fn parse(filters: &[EventFilter]) -> Result<Filters, FilterError> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let key = f.key.as_str();
            if DOCKER_ONLY.contains(&key) {
                return Err(FilterError::Unsupported { key: f.key.clone() });
            }
            if !KEYS.contains(&key) {
                return Err(FilterError::UnknownKey { key: f.key.clone() });
            }
            if key == "type" && !TYPES.contains(&f.value.as_str()) {
                return Err(FilterError::UnknownType {
                    value: f.value.clone(),
                });
            }
            if key == "scope" && f.value != "swarm" && f.value != "local" {
                return Err(FilterError::UnknownScope {
                    value: f.value.clone(),
                });
            }
            by_key
                .entry(f.key.clone())
                .or_default()
                .push(f.value.clone());
        }
        Ok(Filters(by_key))
    }

    /// Whether `event` passes every key.
    pub fn matches(&self, event: &Event) -> bool {
        self.0
            .iter()
            .all(|(key, values)| values.iter().any(|value| matches_one(event, key, value)))
    }
}

/// Whether one `key=value` holds for `event`. An object key (`service=web`) matches events of
/// that object by id or name, and task events of its service or node by id or name.
fn matches_one(event: &Event, key: &str, value: &str) -> bool {
    let attr = |k: &str| event.attributes.get(k).map(String::as_str);
    let own = |kind: &str| {
        event.r#type == kind && (event.actor_id == value || attr("name") == Some(value))
    };
    match key {
        "type" => event.r#type == value,
        "event" => event.action == value,
        "scope" => event.scope == value,
        "service" => {
            own("service")
                || (event.r#type == "task"
                    && (attr("service.id") == Some(value) || attr("service.name") == Some(value)))
        }
        "node" => own("node") || (event.r#type == "task" && attr("node.id") == Some(value)),
        "network" | "secret" | "config" | "task" => own(key),
        _ => false,
    }
}
