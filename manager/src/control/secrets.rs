//! `secret create | ls | inspect | rm`, the same for `config`, and the resolution of the
//! secret and config references of a service spec (names → ids, Docker's default files).
//!
//! Secrets and configs are the same object with a different name and one difference in
//! what the control API shows: a secret's value never leaves the manager through this API
//! ([`public_secret`]); the dispatcher hands it only to nodes with a task using it.

use mini_proto::v1::{
    Config, ConfigReference, ConfigSpec, FileTarget, RemoveResponse, Secret, SecretReference,
    SecretSpec, ServiceSpec, store_action::Action,
};

use super::ControlError;
use crate::ids::new_id;
use crate::manager::Manager;
use crate::store::{Tables, create_action, update_action};

/// The largest secret or config value Docker accepts is just under 500 KiB (swarmkit's
/// `MaxSecretSize`: a value of this size or more is refused).
pub const MAX_DATA: usize = 500 * 1024;

/// The longest secret or config name.
pub const MAX_NAME: usize = 64;

/// Default permission bits of a secret's or config's file in a task.
pub const DEFAULT_MODE: u32 = 0o444;

/// Whether `name` is a valid secret or config name: Docker's
/// `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`, at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a new secret's or config's name and value as swarmkit does, with its wording.
pub fn validate(kind: &str, name: &str, data: &[u8]) -> Result<(), ControlError> {
    if !valid_name(name) {
        return Err(ControlError::Invalid(format!(
            "invalid {kind} name {name:?}: only {MAX_NAME} [a-zA-Z0-9-_.] characters allowed, \
             and the start and end character must be [a-zA-Z0-9]"
        )));
    }
    if data.is_empty() || data.len() >= MAX_DATA {
        return Err(ControlError::Invalid(format!(
            "{kind} data must be larger than 0 and less than 500 KB ({MAX_DATA} bytes); \
             {name} has {} bytes",
            data.len()
        )));
    }
    Ok(())
}

/// A secret as the control API shows it: without its value.
pub fn public_secret(mut secret: Secret) -> Secret {
    if let Some(spec) = secret.spec.as_mut() {
        spec.data.clear();
    }
    secret
}

/// The names of the services whose spec refers to the object `id` through `uses`.
fn users(t: &Tables, uses: impl Fn(&ServiceSpec) -> bool) -> Vec<String> {
    t.services
        .values()
        .filter_map(|s| s.spec.as_ref())
        .filter(|spec| uses(spec))
        .map(|spec| spec.name.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// swarmkit's refusal to remove an object a service uses.
fn in_use(kind: &str, name: &str, services: &[String]) -> ControlError {
    let plural = if services.len() == 1 { "" } else { "s" };
    ControlError::Invalid(format!(
        "{kind} '{name}' is in use by the following service{plural}: {}",
        services.join(", ")
    ))
}

/// Stores a new secret; returns it without its value.
pub(super) async fn create_secret(
    manager: &Manager,
    spec: Option<SecretSpec>,
) -> Result<Secret, ControlError> {
    let spec = spec.ok_or_else(|| ControlError::Invalid("secret spec missing".into()))?;
    validate("secret", &spec.name, &spec.data)?;
    let id = new_id();
    manager
        .write_unfenced(|t| {
            if t.secrets
                .values()
                .any(|s| s.spec.as_ref().is_some_and(|x| x.name == spec.name))
            {
                return Err(ControlError::Conflict(format!(
                    "secret {} already exists",
                    spec.name
                )));
            }
            let secret = Secret {
                id: id.clone(),
                meta: None,
                spec: Some(spec.clone()),
            };
            Ok((vec![create_action(Action::PutSecret(secret))], ()))
        })
        .await?;
    manager
        .store()
        .view(|t| t.secrets.get(&id).cloned())
        .map(public_secret)
        .ok_or_else(|| ControlError::Internal(format!("secret {id} missing after its creation")))
}

/// Stores a new config.
pub(super) async fn create_config(
    manager: &Manager,
    spec: Option<ConfigSpec>,
) -> Result<Config, ControlError> {
    let spec = spec.ok_or_else(|| ControlError::Invalid("config spec missing".into()))?;
    validate("config", &spec.name, &spec.data)?;
    let id = new_id();
    manager
        .write_unfenced(|t| {
            if t.configs
                .values()
                .any(|c| c.spec.as_ref().is_some_and(|x| x.name == spec.name))
            {
                return Err(ControlError::Conflict(format!(
                    "config {} already exists",
                    spec.name
                )));
            }
            let config = Config {
                id: id.clone(),
                meta: None,
                spec: Some(spec.clone()),
            };
            Ok((vec![create_action(Action::PutConfig(config))], ()))
        })
        .await?;
    manager
        .store()
        .view(|t| t.configs.get(&id).cloned())
        .ok_or_else(|| ControlError::Internal(format!("config {id} missing after its creation")))
}

/// Removes a secret no service uses.
pub(super) async fn remove_secret(
    manager: &Manager,
    query: &str,
) -> Result<RemoveResponse, ControlError> {
    manager
        .write_unfenced(|t| {
            let secret = t.secret(query)?;
            let name = secret.spec.as_ref().map_or("", |s| s.name.as_str());
            let services = users(t, |spec| {
                spec.container
                    .as_ref()
                    .is_some_and(|c| c.secrets.iter().any(|r| r.secret_id == secret.id))
            });
            if !services.is_empty() {
                return Err(in_use("secret", name, &services));
            }
            let id = secret.id.clone();
            Ok((
                vec![update_action(Action::RemoveSecret(id.clone()))],
                RemoveResponse { id },
            ))
        })
        .await
}

/// Removes a config no service uses.
pub(super) async fn remove_config(
    manager: &Manager,
    query: &str,
) -> Result<RemoveResponse, ControlError> {
    manager
        .write_unfenced(|t| {
            let config = t.config(query)?;
            let name = config.spec.as_ref().map_or("", |s| s.name.as_str());
            let services = users(t, |spec| {
                spec.container
                    .as_ref()
                    .is_some_and(|c| c.configs.iter().any(|r| r.config_id == config.id))
            });
            if !services.is_empty() {
                return Err(in_use("config", name, &services));
            }
            let id = config.id.clone();
            Ok((
                vec![update_action(Action::RemoveConfig(id.clone()))],
                RemoveResponse { id },
            ))
        })
        .await
}

/// Checks a file target's owner and mode; fills Docker's defaults (`0`, `0`, 0444) and the
/// default name.
fn complete_file(
    kind: &str,
    source: &str,
    file: Option<FileTarget>,
    default_name: String,
) -> Result<FileTarget, ControlError> {
    let mut file = file.unwrap_or_default();
    if file.name.is_empty() {
        file.name = default_name;
    }
    let invalid =
        |why: String| ControlError::Invalid(format!("invalid {kind} reference {source}: {why}"));
    if file.name.contains('\0') || file.name.split('/').any(|part| part == ".." || part == ".") {
        return Err(invalid(format!(
            "target {:?} must be a path without '.' or '..' components",
            file.name
        )));
    }
    for (what, value) in [("uid", &mut file.uid), ("gid", &mut file.gid)] {
        if value.is_empty() {
            *value = "0".into();
        }
        if value.parse::<u32>().is_err() {
            return Err(invalid(format!("{what} {value:?} is not a number")));
        }
    }
    if file.mode == 0 {
        file.mode = DEFAULT_MODE;
    }
    if file.mode > 0o7777 {
        return Err(invalid(format!("mode {:o} is not a file mode", file.mode)));
    }
    Ok(file)
}

/// Resolves the secret and config references of `spec` against the store: each names an
/// existing object (by name, id or id prefix; `*_id` wins when set), gets its id and name,
/// and Docker's default file (secrets: `/run/secrets/<name>`, stored as `<name>`; configs:
/// `/<name>`; uid and gid 0, mode 0444). Two references with the same target are refused.
pub fn resolve_references(t: &Tables, spec: &mut ServiceSpec) -> Result<(), ControlError> {
    let Some(container) = spec.container.as_mut() else {
        return Ok(());
    };
    let mut targets: Vec<(String, String)> = Vec::new();
    let mut check_target = |kind: &str, source: &str, target: &str| -> Result<(), ControlError> {
        if let Some((other, _)) = targets.iter().find(|(_, t)| t == target) {
            return Err(ControlError::Invalid(format!(
                "{kind} references '{other}' and '{source}' have a conflicting target: '{target}'"
            )));
        }
        targets.push((source.to_string(), target.to_string()));
        Ok(())
    };
    for r in &mut container.secrets {
        let query = if r.secret_id.is_empty() {
            r.secret_name.clone()
        } else {
            r.secret_id.clone()
        };
        let secret = t.secret(&query)?;
        let name = secret
            .spec
            .as_ref()
            .map_or(String::new(), |s| s.name.clone());
        *r = SecretReference {
            secret_id: secret.id.clone(),
            secret_name: name.clone(),
            file: Some(complete_file("secret", &name, r.file.take(), name.clone())?),
        };
        let target = r.file.as_ref().map_or("", |f| f.name.as_str());
        let path = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/run/secrets/{target}")
        };
        check_target("secret", &name, &path)?;
    }
    for r in &mut container.configs {
        let query = if r.config_id.is_empty() {
            r.config_name.clone()
        } else {
            r.config_id.clone()
        };
        let config = t.config(&query)?;
        let name = config
            .spec
            .as_ref()
            .map_or(String::new(), |s| s.name.clone());
        *r = ConfigReference {
            config_id: config.id.clone(),
            config_name: name.clone(),
            file: Some(complete_file(
                "config",
                &name,
                r.file.take(),
                format!("/{name}"),
            )?),
        };
        let target = r.file.as_ref().map_or("", |f| f.name.as_str());
        let path = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{target}")
        };
        check_target("config", &name, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["a", "db_password", "site.key", "A-1", &"x".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "a/b",
            ".a",
            "a_",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(validate("secret", "ok", b"v").is_ok());
        let err = validate("secret", "bad name", b"v")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid secret name \"bad name\""), "{err}");
        let err = validate("secret", "empty", b"").unwrap_err().to_string();
        assert!(err.contains("larger than 0 and less than 500 KB"), "{err}");
        assert!(validate("config", "big", &vec![b'x'; MAX_DATA - 1]).is_ok());
        let err = validate("config", "big", &vec![b'x'; MAX_DATA])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config data must be"), "{err}");
    }

    fn tables() -> Tables {
        let mut t = Tables::default();
        for (id, name) in [("s1aaaa", "db_pass"), ("s2bbbb", "api_key")] {
            t.secrets.insert(
                id.into(),
                Secret {
                    id: id.into(),
                    meta: None,
                    spec: Some(SecretSpec {
                        name: name.into(),
                        data: b"v".to_vec(),
                        ..Default::default()
                    }),
                },
            );
        }
        t.configs.insert(
            "c1cccc".into(),
            Config {
                id: "c1cccc".into(),
                meta: None,
                spec: Some(ConfigSpec {
                    name: "nginx.conf".into(),
                    data: b"v".to_vec(),
                    ..Default::default()
                }),
            },
        );
        t
    }

    fn spec(secrets: Vec<SecretReference>, configs: Vec<ConfigReference>) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            container: Some(mini_proto::v1::ContainerSpec {
                secrets,
                configs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn by_name(name: &str) -> SecretReference {
        SecretReference {
            secret_name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn references_resolve_to_ids_with_dockers_defaults() {
        let t = tables();
        let mut s = spec(
            vec![
                by_name("db_pass"),
                SecretReference {
                    secret_name: "s2b".into(),
                    file: Some(FileTarget {
                        name: "key".into(),
                        uid: "33".into(),
                        gid: "".into(),
                        mode: 0o400,
                    }),
                    ..Default::default()
                },
            ],
            vec![ConfigReference {
                config_name: "nginx.conf".into(),
                ..Default::default()
            }],
        );
        resolve_references(&t, &mut s).unwrap();
        let c = s.container.unwrap();
        assert_eq!(c.secrets[0].secret_id, "s1aaaa");
        assert_eq!(
            c.secrets[0].file,
            Some(FileTarget {
                name: "db_pass".into(),
                uid: "0".into(),
                gid: "0".into(),
                mode: 0o444
            })
        );
        assert_eq!(
            (
                c.secrets[1].secret_id.as_str(),
                c.secrets[1].secret_name.as_str()
            ),
            ("s2bbbb", "api_key")
        );
        let f = c.secrets[1].file.clone().unwrap();
        assert_eq!(
            (f.name.as_str(), f.uid.as_str(), f.gid.as_str(), f.mode),
            ("key", "33", "0", 0o400)
        );
        assert_eq!(c.configs[0].config_id, "c1cccc");
        assert_eq!(c.configs[0].file.as_ref().unwrap().name, "/nginx.conf");
    }

    #[test]
    fn bad_references_are_refused() {
        let t = tables();
        let mut unknown = spec(vec![by_name("nope")], vec![]);
        assert_eq!(
            resolve_references(&t, &mut unknown)
                .unwrap_err()
                .to_string(),
            "no such secret: nope"
        );
        let mut twice = spec(vec![by_name("db_pass"), by_name("db_pass")], vec![]);
        assert_eq!(
            resolve_references(&t, &mut twice).unwrap_err().to_string(),
            "secret references 'db_pass' and 'db_pass' have a conflicting target: '/run/secrets/db_pass'"
        );
        let mut escape = spec(
            vec![SecretReference {
                secret_name: "db_pass".into(),
                file: Some(FileTarget {
                    name: "../../etc/passwd".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            vec![],
        );
        assert!(resolve_references(&t, &mut escape).is_err());
        let mut uid = spec(
            vec![SecretReference {
                secret_name: "db_pass".into(),
                file: Some(FileTarget {
                    uid: "www".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            vec![],
        );
        assert!(
            resolve_references(&t, &mut uid)
                .unwrap_err()
                .to_string()
                .contains("uid \"www\" is not a number")
        );
    }
}
