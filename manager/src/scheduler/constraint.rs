//! Placement constraints: `node.id==x`, `node.hostname!=y`,
//! `node.role==manager`, `node.platform.os==linux`, `node.platform.arch==x86_64`,
//! `node.labels.zone==east`, `engine.labels.disk==ssd`.

use std::fmt;

use mini_proto::v1::{Node, NodeRole};

/// What a constraint looks at on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConstraintKey {
    /// `node.id`
    NodeId,
    /// `node.hostname`
    Hostname,
    /// `node.role` (`manager` or `worker`)
    Role,
    /// `node.platform.os` (`linux`), as the node reports it.
    PlatformOs,
    /// `node.platform.arch` (`x86_64`, as `uname -m` prints it), as the node reports it.
    PlatformArch,
    /// `node.labels.<name>`: a label of the node's spec (`node update --label-add`).
    Label(String),
    /// `engine.labels.<name>`: a label of the node's daemon (`mini daemon --label`).
    EngineLabel(String),
}

/// How a constraint compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// One parsed placement constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// What is compared.
    pub key: ConstraintKey,
    /// How.
    pub op: Operator,
    /// With what (compared ignoring ASCII case, as Swarm does).
    pub value: String,
}

/// Why a constraint expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// No `==` or `!=` in the expression.
    #[error(
        "invalid constraint {expr:?}: no operator; use KEY==VALUE or KEY!=VALUE, e.g. node.labels.zone==east"
    )]
    MissingOperator {
        /// The expression as given.
        expr: String,
    },
    /// An operator other than `==` or `!=`.
    #[error("invalid constraint {expr:?}: unknown operator {op:?}; use == or !=")]
    UnknownOperator {
        /// The expression as given.
        expr: String,
        /// The operator found.
        op: String,
    },
    /// A key other than the supported ones.
    #[error(
        "invalid constraint {expr:?}: unknown key {key:?}; use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>"
    )]
    UnknownKey {
        /// The expression as given.
        expr: String,
        /// The key found.
        key: String,
    },
    /// Nothing after the operator.
    #[error("invalid constraint {expr:?}: the value is empty")]
    EmptyValue {
        /// The expression as given.
        expr: String,
    },
    /// `node.role` compared with something other than a role.
    #[error("invalid constraint {expr:?}: node.role is manager or worker, not {value:?}")]
    UnknownRole {
        /// The expression as given.
        expr: String,
        /// The value found.
        value: String,
    },
}

/// Parses one constraint expression. Call it when a service is created or
/// updated, so a bad constraint is refused before any task exists.
pub fn parse_constraint(expr: &str) -> Result<Constraint, ConstraintError> {
    // The first operator wins, so a value may itself contain "==" or "!=".
    let eq = expr.find("==");
    let ne = expr.find("!=");
    let (key, op, value) = if let Some(i) = eq.filter(|i| ne.is_none_or(|j| i < &j)) {
        (&expr[..i], Operator::Eq, &expr[i + 2..])
    } else if let Some(i) = ne {
        (&expr[..i], Operator::Ne, &expr[i + 2..])
    } else {
        return Err(match expr.find(['=', '<', '>', '~', '!']) {
            Some(i) => {
                let op: String = expr[i..]
                    .chars()
                    .take_while(|c| "=<>~!".contains(*c))
                    .collect();
                ConstraintError::UnknownOperator {
                    expr: expr.to_owned(),
                    op,
                }
            }
            None => ConstraintError::MissingOperator {
                expr: expr.to_owned(),
            },
        });
    };
    let (key, value) = (key.trim(), value.trim());
    if value.is_empty() {
        return Err(ConstraintError::EmptyValue {
            expr: expr.to_owned(),
        });
    }
    let lower = key.to_ascii_lowercase();
    let key = match lower.as_str() {
        "node.id" => ConstraintKey::NodeId,
        "node.hostname" => ConstraintKey::Hostname,
        "node.role" => {
            if !["manager", "worker"].contains(&value.to_ascii_lowercase().as_str()) {
                return Err(ConstraintError::UnknownRole {
                    expr: expr.to_owned(),
                    value: value.to_owned(),
                });
            }
            ConstraintKey::Role
        }
        "node.platform.os" => ConstraintKey::PlatformOs,
        "node.platform.arch" => ConstraintKey::PlatformArch,
        _ => {
            // Label names keep their case; only the prefix is case-insensitive.
            let name = |prefix: &str| {
                lower
                    .strip_prefix(prefix)
                    .filter(|n| !n.is_empty())
                    .map(|n| key[key.len() - n.len()..].to_owned())
            };
            if let Some(name) = name("node.labels.") {
                ConstraintKey::Label(name)
            } else if let Some(name) = name("engine.labels.") {
                ConstraintKey::EngineLabel(name)
            } else {
                return Err(ConstraintError::UnknownKey {
                    expr: expr.to_owned(),
                    key: key.to_owned(),
                });
            }
        }
    };
    Ok(Constraint {
        key,
        op,
        value: value.to_owned(),
    })
}

/// Parses every constraint of a service or task, stopping at the first bad one.
pub fn parse_constraints<S: AsRef<str>>(exprs: &[S]) -> Result<Vec<Constraint>, ConstraintError> {
    exprs.iter().map(|e| parse_constraint(e.as_ref())).collect()
}

impl Constraint {
    /// Whether `node` satisfies the constraint. A missing label (or platform the
    /// node did not report) satisfies only `!=`, as in swarmkit.
    pub fn matches(&self, node: &Node) -> bool {
        let description = node.description.as_ref();
        let platform = description.and_then(|d| d.platform.as_ref());
        let actual: Option<&str> = match &self.key {
            ConstraintKey::NodeId => Some(&node.id),
            ConstraintKey::Hostname => Some(&node.hostname),
            ConstraintKey::Role => Some(match node.role() {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }),
            ConstraintKey::Label(name) => node
                .spec
                .as_ref()
                .and_then(|s| s.labels.get(name))
                .map(String::as_str),
            ConstraintKey::PlatformOs => platform.map(|p| p.os.as_str()),
            ConstraintKey::PlatformArch => platform.map(|p| p.architecture.as_str()),
            ConstraintKey::EngineLabel(name) => description
                .and_then(|d| d.engine_labels.get(name))
                .map(String::as_str),
        };
        let equal = actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        match self.op {
            Operator::Eq => equal,
            Operator::Ne => !equal,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            ConstraintKey::NodeId => f.write_str("node.id")?,
            ConstraintKey::Hostname => f.write_str("node.hostname")?,
            ConstraintKey::Role => f.write_str("node.role")?,
            ConstraintKey::PlatformOs => f.write_str("node.platform.os")?,
            ConstraintKey::PlatformArch => f.write_str("node.platform.arch")?,
            ConstraintKey::Label(name) => write!(f, "node.labels.{name}")?,
            ConstraintKey::EngineLabel(name) => write!(f, "engine.labels.{name}")?,
        }
        let op = match self.op {
            Operator::Eq => "==",
            Operator::Ne => "!=",
        };
        write!(f, "{op}{}", self.value)
    }
}
