//! `mini image ls|inspect|rm|prune|pull|load|save`, `mini login|logout`:
//! the node's image store, with Docker's columns and wording.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use mini_proto::v1::images_client::ImagesClient;
use mini_proto::v1::{
    ImageInspectRequest, ImageListRequest, ImageLoadChunk, ImageLoginRequest, ImagePruneRequest,
    ImagePullRequest, ImageRegistryAuth, ImageRemoval, ImageRemoveRequest, ImageSaveRequest,
};
use mini_worker::image::Reference;
use tonic::transport::Channel;

use super::credentials::Credentials;
use crate::client::channel;
use crate::output::{print_json, write_stdout};

/// `mini image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more images.
    Inspect {
        /// Image name, id or id prefix.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove one or more images.
    #[command(visible_alias = "remove")]
    Rm {
        /// Force removal of the image (even with several tags).
        #[arg(short, long)]
        force: bool,
        /// Image name, id or id prefix.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unused images.
    Prune {
        /// Remove all images no task uses, not just dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Download an image from a registry.
    Pull {
        /// Image reference (`alpine`, `alpine:3.19`, `host:5000/team/app@sha256:...`).
        reference: String,
        /// Suppress verbose output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Load an image from a tar archive (docker save or OCI layout) or STDIN.
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save {
        /// Write to a file, instead of STDOUT.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Image names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// Flags of `mini image ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all images (default hides none: intermediate images do not exist here).
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Format output: 'table', 'table TEMPLATE', 'json' or a Go template ('{{.ID}}').
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (`alpine`, `alpine:3.19`).
    repository: Option<String>,
}

/// Flags of `mini image load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output.
    #[arg(short, long)]
    quiet: bool,
    /// On a manager: also load the image on every other node of the swarm.
    #[arg(long)]
    all_nodes: bool,
}

/// Flags of `mini login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Registry (`HOST[:PORT]`; default Docker Hub).
    server: Option<String>,
}

/// Flags of `mini logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry (`HOST[:PORT]`; default Docker Hub).
    server: Option<String>,
}

async fn client(host: &str) -> Result<ImagesClient<Channel>> {
    Ok(ImagesClient::new(channel(host).await?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// Runs `mini image ...`.
pub async fn run(host: &str, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Ls(args) => ls(host, args).await,
        ImageCommand::Inspect { images } => {
            let out = client(host)
                .await?
                .image_inspect(ImageInspectRequest { images })
                .await?
                .into_inner();
            let values: Vec<serde_json::Value> = out
                .json
                .iter()
                .map(|j| serde_json::from_str(j))
                .collect::<Result<_, _>>()?;
            print_json(&values)
        }
        ImageCommand::Rm { force, images } => {
            let out = client(host)
                .await?
                .image_remove(ImageRemoveRequest { images, force })
                .await?
                .into_inner();
            write_stdout(&removal_lines(&out.removals, false));
            if !out.errors.is_empty() {
                bail!("{}", out.errors.join("\nerror: "));
            }
            Ok(())
        }
        ImageCommand::Prune { all, force } => {
            if !force {
                let what = if all {
                    "all images without at least one container associated to them"
                } else {
                    "all dangling images"
                };
                eprint!(
                    "WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] "
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(());
                }
            }
            let out = client(host)
                .await?
                .image_prune(ImagePruneRequest { all })
                .await?
                .into_inner();
            let mut text = String::new();
            if !out.removals.is_empty() {
                text.push_str("Deleted Images:\n");
                text.push_str(&removal_lines(&out.removals, true));
                text.push('\n');
            }
            text.push_str(&format!(
                "Total reclaimed space: {}\n",
                human_size(out.space_reclaimed)
            ));
            write_stdout(&text);
            Ok(())
        }
        ImageCommand::Pull { reference, quiet } => pull(host, &reference, quiet).await,
        ImageCommand::Load(args) => load(host, args).await,
        ImageCommand::Save { output, images } => save(host, output, images).await,
    }
}

fn removal_lines(list: &[ImageRemoval], lower: bool) -> String {
    list.iter()
        .map(|r| {
            let action = if lower {
                r.action.to_lowercase()
            } else {
                r.action.clone()
            };
            format!("{action}: {}\n", r.name)
        })
        .collect()
}

async fn ls(host: &str, args: LsArgs) -> Result<()> {
    let out = client(host)
        .await?
        .image_list(ImageListRequest { all: args.all })
        .await?
        .into_inner();
    let filter = match &args.repository {
        Some(r) => Some(Reference::parse_normalized(r).context("invalid repository filter")?),
        None => None,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let id_of = |id: &str| {
        if args.no_trunc {
            id.to_string()
        } else {
            id.trim_start_matches("sha256:").chars().take(12).collect()
        }
    };
    // One row per tag (Docker), `<none>` for untagged images.
    let mut rows: Vec<(String, String, String, &mini_proto::v1::ImageSummary)> = Vec::new();
    for image in &out.images {
        let digest_of = |name: &str| {
            image
                .repo_digests
                .iter()
                .find_map(|d| {
                    let (n, digest) = d.split_once('@')?;
                    (n == name).then(|| digest.to_string())
                })
                .unwrap_or_else(|| "<none>".into())
        };
        if image.repo_tags.is_empty() {
            let (repo, digest) = match image.repo_digests.first().and_then(|d| d.split_once('@')) {
                Some((n, d)) => (familiar(n), d.to_string()),
                None => ("<none>".into(), "<none>".into()),
            };
            rows.push((repo, "<none>".into(), digest, image));
        }
        for t in &image.repo_tags {
            let Ok(r) = Reference::parse_normalized(t) else {
                continue;
            };
            rows.push((
                r.familiar_name(),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
                digest_of(&r.name()),
                image,
            ));
        }
    }
    if let Some(f) = &filter {
        rows.retain(|(repo, tag, _, _)| {
            *repo == f.familiar_name() && f.tag.as_ref().is_none_or(|t| t == tag)
        });
    }
    if args.quiet {
        let mut seen = Vec::new();
        for (_, _, _, image) in &rows {
            let id = id_of(&image.id);
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        write_stdout(&seen.iter().map(|s| format!("{s}\n")).collect::<String>());
        return Ok(());
    }
    let rows = rows
        .iter()
        .map(|(repo, tag, digest, image)| {
            serde_json::json!({
                "Repository": repo, "Tag": tag, "Digest": digest,
                "ID": id_of(&image.id),
                "CreatedAt": image.created,
                "CreatedSince": created_since(&image.created, now_ms),
                "Size": human_size(image.size),
                "Containers": image.containers.to_string(),
            })
        })
        .collect();
    let listing = crate::format::Listing {
        headers: &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("ID", "IMAGE ID"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
            ("Containers", "CONTAINERS"),
        ],
        default_table: if args.digests {
            "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        } else {
            "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        },
        id_field: "ID",
        rows,
    };
    let shape = crate::format::shape(args.format.as_deref(), false, &listing);
    write_stdout(&crate::format::render_rows(&listing, &shape)?);
    Ok(())
}

fn familiar(name: &str) -> String {
    Reference::parse_normalized(name).map_or_else(|_| name.to_string(), |r| r.familiar_name())
}

async fn pull(host: &str, reference: &str, quiet: bool) -> Result<()> {
    let parsed = Reference::parse_normalized(reference)?;
    let auth = Credentials::load()?.get(&parsed.domain);
    let mut say = String::new();
    if parsed.tag.is_none() && parsed.digest.is_none() && !quiet {
        write_stdout("Using default tag: latest\n");
    }
    let full = parsed.clone().with_default_tag();
    let before = client(host)
        .await?
        .image_inspect(ImageInspectRequest {
            images: vec![reference.to_string()],
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().json.into_iter().next())
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .and_then(|v| v.get("Id").and_then(|i| i.as_str()).map(str::to_string));
    let out = client(host)
        .await?
        .image_pull(ImagePullRequest {
            reference: reference.to_string(),
            auth,
        })
        .await?
        .into_inner();
    if !quiet {
        if let Some(tag) = &full.tag {
            say.push_str(&format!(
                "{tag}: Pulling from {}\n",
                Reference::parse_normalized(&full.name()).map_or(full.path.clone(), |r| r.path)
            ));
        }
        if let Some((_, digest)) = out.digest.split_once('@') {
            say.push_str(&format!("Digest: {digest}\n"));
        }
        let status = if before.as_deref() == Some(out.id.as_str()) {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        say.push_str(&format!("Status: {status} {}\n", full.familiar_string()));
    }
    say.push_str(&format!("{}\n", full));
    write_stdout(&say);
    Ok(())
}

async fn load(host: &str, args: LoadArgs) -> Result<()> {
    let mut input: Box<dyn Read + Send> = match &args.input {
        Some(path) => {
            Box::new(std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?)
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(std::io::stdin())
        }
    };
    let all_nodes = args.all_nodes;
    let (tx, rx) = tokio::sync::mpsc::channel::<ImageLoadChunk>(4);
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut first = true;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let n = input.read(&mut buf)?;
            if n == 0 && !first {
                return Ok(());
            }
            buf.truncate(n);
            let chunk = ImageLoadChunk {
                data: buf,
                all_nodes: first && all_nodes,
            };
            first = false;
            if tx.blocking_send(chunk).is_err() || n == 0 {
                return Ok(());
            }
        }
    });
    let out = client(host)
        .await?
        .image_load(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    reader.await?.context("cannot read the archive")?;
    let out = out?.into_inner();
    if !args.quiet {
        let mut text: String = out.loaded.iter().map(|l| format!("{l}\n")).collect();
        for n in &out.nodes {
            text.push_str(&format!("{n}\n"));
        }
        write_stdout(&text);
    }
    if out.nodes.iter().any(|n| n.contains(": error:")) {
        bail!("the image did not reach every node");
    }
    Ok(())
}

async fn save(host: &str, output: Option<PathBuf>, images: Vec<String>) -> Result<()> {
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
        ),
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            Box::new(std::io::stdout().lock())
        }
    };
    let mut stream = client(host)
        .await?
        .image_save(ImageSaveRequest { images })
        .await?
        .into_inner();
    let result = async {
        while let Some(chunk) = stream.message().await? {
            out.write_all(&chunk.data)?;
        }
        out.flush()?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err()
        && let Some(path) = &output
    {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Runs `mini login`: checks the credentials through the daemon, then
/// stores them (file 0600).
pub async fn login(host: &str, args: LoginArgs) -> Result<()> {
    let server = registry_key(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut u = String::new();
            std::io::stdin().read_line(&mut u)?;
            u.trim().to_string()
        }
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, _) => {
            if !args.password_stdin {
                eprint!("Password: ");
            }
            let mut p = String::new();
            std::io::stdin().read_line(&mut p)?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if username.is_empty() || password.is_empty() {
        bail!("login needs a non-empty username and password");
    }
    let auth = ImageRegistryAuth { username, password };
    client(host)
        .await?
        .image_login(ImageLoginRequest {
            registry: server.clone(),
            auth: Some(auth.clone()),
        })
        .await?;
    let mut creds = Credentials::load()?;
    creds.set(&server, auth);
    creds.save()?;
    write_stdout("Login Succeeded\n");
    Ok(())
}

/// Runs `mini logout`.
pub fn logout(args: LogoutArgs) -> Result<()> {
    let server = registry_key(args.server.as_deref());
    let mut creds = Credentials::load()?;
    if creds.remove(&server) {
        creds.save()?;
        write_stdout(&format!("Removing login credentials for {server}\n"));
    } else {
        write_stdout(&format!("Not logged in to {server}\n"));
    }
    Ok(())
}

/// The key credentials are filed under: the registry's `host[:port]`
/// (`docker.io` for Docker Hub, whatever alias the user typed).
fn registry_key(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches("/v2");
    match s {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// `CREATED` as Docker shows it ("2 weeks ago"); "N/A" without a date.
fn created_since(rfc3339: &str, now_ms: i64) -> String {
    match parse_rfc3339_ms(rfc3339) {
        Some(ms) => format!("{} ago", crate::output::human_duration(now_ms - ms)),
        None => "N/A".into(),
    }
}

/// go-units' `HumanSize`: decimal units, three significant digits.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-01-02T03:04:05.6Z`).
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset_secs) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let ms = frac
        .get(..frac.len().min(3))
        .and_then(|f| format!("{f:0<3}").parse::<i64>().ok())
        .unwrap_or(0);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss - offset_secs) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(7_800_000), "7.8MB");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(123_456), "123kB");
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-02T00:00:01.5Z"), Some(86_401_500));
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:00Z"),
            Some(951_868_800_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T02:00:00+02:00"),
            Some(951_868_800_000)
        );
        assert_eq!(parse_rfc3339_ms(""), None);
    }

    #[test]
    fn registry_keys() {
        assert_eq!(registry_key(None), "docker.io");
        assert_eq!(
            registry_key(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_key(Some("reg.local:5000")), "reg.local:5000");
    }
}
