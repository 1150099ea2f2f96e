//! `mini secret create | ls | inspect | rm` and `mini config create | ls | inspect | rm`:
//! Docker's verbs, flags and output. A secret's value is never shown (the daemon never
//! returns it); a config's is (`inspect`: base64 `Data`; `--pretty`: the text).

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Subcommand;
use mini_proto::v1::{
    ConfigSpec, CreateConfigRequest, CreateSecretRequest, GetRequest, ListConfigsRequest,
    ListSecretsRequest, Meta, SecretSpec,
};
use serde::Serialize;

use crate::client::connect;
use crate::format::{ListArgs, print_inspect, print_rows};
use crate::output::write_stdout;

/// The subcommands of `secret` and `config` (the same for both).
#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Create an object from a file or STDIN as content.
    Create {
        /// Object labels (KEY=VALUE, repeatable).
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Name.
        name: String,
        /// File with the content, or `-` to read it from STDIN.
        file: String,
    },
    /// List them.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more of them (JSON).
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        /// Format output using a Go template ('{{.Spec.Name}}'), or 'json'.
        #[arg(short, long)]
        format: Option<String>,
        /// Names or ids.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more of them.
    #[command(alias = "remove")]
    Rm {
        /// Names or ids.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Which kind of object a command manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `mini secret`.
    Secret,
    /// `mini config`.
    Config,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        None if !s.is_empty() => Ok((s.to_string(), String::new())),
        _ => Err(format!("invalid label {s:?}: expected KEY=VALUE")),
    }
}

/// The content of `file`, or of STDIN for `-`.
fn read_content(file: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("error reading content from STDIN")?;
    } else {
        data =
            std::fs::read(file).with_context(|| format!("error reading content from {file:?}"))?;
    }
    Ok(data)
}

/// One object as both kinds share it: id, meta, name, labels, data (empty for secrets).
struct Object {
    id: String,
    meta: Option<Meta>,
    name: String,
    labels: BTreeMap<String, String>,
    data: Vec<u8>,
}

impl From<mini_proto::v1::Secret> for Object {
    fn from(s: mini_proto::v1::Secret) -> Self {
        let spec = s.spec.unwrap_or_default();
        Object {
            id: s.id,
            meta: s.meta,
            name: spec.name,
            labels: spec.labels.into_iter().collect(),
            data: Vec::new(),
        }
    }
}

impl From<mini_proto::v1::Config> for Object {
    fn from(c: mini_proto::v1::Config) -> Self {
        let spec = c.spec.unwrap_or_default();
        Object {
            id: c.id,
            meta: c.meta,
            name: spec.name,
            labels: spec.labels.into_iter().collect(),
            data: spec.data,
        }
    }
}

/// `Version` of Docker's objects.
#[derive(Serialize)]
struct VersionView {
    #[serde(rename = "Index")]
    index: u64,
}

/// `Spec` of Docker's secrets (no `Data`) and configs (`Data` in base64).
#[derive(Serialize)]
struct SpecView {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Labels")]
    labels: BTreeMap<String, String>,
    #[serde(rename = "Data", skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

/// A secret or config as `inspect` and `ls --format json` show it: Docker's JSON.
#[derive(Serialize)]
struct ObjectView {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Version")]
    version: VersionView,
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "UpdatedAt")]
    updated_at: String,
    #[serde(rename = "Spec")]
    spec: SpecView,
}

impl ObjectView {
    fn new(kind: Kind, o: &Object) -> Self {
        let meta = o.meta.unwrap_or_default();
        ObjectView {
            id: o.id.clone(),
            version: VersionView {
                index: meta.version,
            },
            created_at: rfc3339(meta.created_at_ms),
            updated_at: rfc3339(meta.updated_at_ms),
            spec: SpecView {
                name: o.name.clone(),
                labels: o.labels.clone(),
                data: (kind == Kind::Config)
                    .then(|| base64::engine::general_purpose::STANDARD.encode(&o.data)),
            },
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC (`2017-03-24T08:15:09.735Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A secret as `secret inspect` shows it (never its value).
pub fn secret_view(s: mini_proto::v1::Secret) -> impl Serialize {
    ObjectView::new(Kind::Secret, &Object::from(s))
}

/// A config as `config inspect` shows it (its data in base64).
pub fn config_view(c: mini_proto::v1::Config) -> impl Serialize {
    ObjectView::new(Kind::Config, &Object::from(c))
}

/// `inspect --pretty`, as Docker prints it.
fn pretty(kind: Kind, o: &Object) -> String {
    let meta = o.meta.unwrap_or_default();
    let mut out = format!("ID:              {}\nName:            {}\n", o.id, o.name);
    if !o.labels.is_empty() {
        out.push_str("Labels:\n");
        for (k, v) in &o.labels {
            out.push_str(&format!(" - {k}={v}\n"));
        }
    }
    if kind == Kind::Secret {
        out.push_str("Driver:\n");
    }
    out.push_str(&format!(
        "Created at:      {}\nUpdated at:      {}\n",
        rfc3339(meta.created_at_ms),
        rfc3339(meta.updated_at_ms)
    ));
    if kind == Kind::Config {
        out.push_str("Data:\n");
        out.push_str(&String::from_utf8_lossy(&o.data));
        if !o.data.ends_with(b"\n") {
            out.push('\n');
        }
    }
    out
}

/// Runs a `secret` or `config` subcommand against the daemon at `host`.
pub async fn run(host: &str, kind: Kind, cmd: ObjectCommand) -> Result<()> {
    let mut client = connect(host).await?;
    match cmd {
        ObjectCommand::Create { labels, name, file } => {
            let data = read_content(&file)?;
            let labels = labels.into_iter().collect();
            let id = match kind {
                Kind::Secret => {
                    let spec = SecretSpec { name, labels, data };
                    client
                        .create_secret(CreateSecretRequest { spec: Some(spec) })
                        .await?
                        .into_inner()
                        .id
                }
                Kind::Config => {
                    let spec = ConfigSpec { name, labels, data };
                    client
                        .create_config(CreateConfigRequest { spec: Some(spec) })
                        .await?
                        .into_inner()
                        .id
                }
            };
            println!("{id}");
        }
        ObjectCommand::Ls(list) => {
            let objects: Vec<Object> = match kind {
                Kind::Secret => client
                    .list_secrets(ListSecretsRequest {})
                    .await?
                    .into_inner()
                    .secrets
                    .into_iter()
                    .map(Object::from)
                    .collect(),
                Kind::Config => client
                    .list_configs(ListConfigsRequest {})
                    .await?
                    .into_inner()
                    .configs
                    .into_iter()
                    .map(Object::from)
                    .collect(),
            };
            let filters = crate::format::Filters::parse(&list.filter, crate::rows::OBJECT_FILTERS)?;
            let rows: Vec<crate::rows::ObjectRow> = objects
                .iter()
                .map(|o| {
                    let meta = o.meta.unwrap_or_default();
                    crate::rows::ObjectRow {
                        id: &o.id,
                        name: &o.name,
                        labels: &o.labels,
                        created_ms: meta.created_at_ms,
                        updated_ms: meta.updated_at_ms,
                    }
                })
                .collect();
            let listing =
                crate::rows::object_listing(&rows, &filters, kind == Kind::Secret, now_ms());
            print_rows(&listing, &list)?;
        }
        ObjectCommand::Inspect {
            pretty: p,
            format,
            names,
        } => {
            let mut objects = Vec::new();
            for name_or_id in names {
                let request = GetRequest { name_or_id };
                objects.push(match kind {
                    Kind::Secret => Object::from(client.get_secret(request).await?.into_inner()),
                    Kind::Config => Object::from(client.get_config(request).await?.into_inner()),
                });
            }
            if p && format.is_none() {
                let text: Vec<String> = objects.iter().map(|o| pretty(kind, o)).collect();
                write_stdout(&text.join("\n\n"));
            } else {
                let views: Vec<ObjectView> =
                    objects.iter().map(|o| ObjectView::new(kind, o)).collect();
                print_inspect(&views, format.as_deref())?;
            }
        }
        ObjectCommand::Rm { names } => {
            // Docker removes every one it can, then reports the ones it could not.
            let mut errors = Vec::new();
            for name_or_id in names {
                let request = GetRequest {
                    name_or_id: name_or_id.clone(),
                };
                let result = match kind {
                    Kind::Secret => client.remove_secret(request).await,
                    Kind::Config => client.remove_config(request).await,
                };
                match result {
                    Ok(_) => println!("{name_or_id}"),
                    Err(status) => errors.push(status.message().to_string()),
                }
            }
            if !errors.is_empty() {
                bail!("{}", errors.join("\n"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_490_343_309_735), "2017-03-24T08:15:09.735Z");
    }

    #[test]
    fn inspect_shows_a_configs_data_but_never_a_secrets() {
        let o = Object {
            id: "abc".into(),
            meta: None,
            name: "site".into(),
            labels: BTreeMap::from([("env".into(), "prod".into())]),
            data: b"listen 80;\n".to_vec(),
        };
        let config = serde_json::to_value(ObjectView::new(Kind::Config, &o)).unwrap();
        assert_eq!(config["Spec"]["Data"], "bGlzdGVuIDgwOwo=");
        assert_eq!(config["Spec"]["Labels"]["env"], "prod");
        let secret = serde_json::to_value(ObjectView::new(Kind::Secret, &o)).unwrap();
        assert!(secret["Spec"].get("Data").is_none(), "{secret}");
        assert!(pretty(Kind::Config, &o).ends_with("Data:\nlisten 80;\n"));
        assert!(!pretty(Kind::Secret, &o).contains("listen"));
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("=x").is_err());
    }
}
