//! The image configuration (the JSON blob an image id is the digest of):
//! what a task inherits from its image, and the layer list it names.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ImageError;

/// What a task takes from its image (Docker's `Config` section).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `KEY=VALUE` entries, in order.
    pub env: Vec<String>,
    /// The entrypoint (empty: none).
    pub entrypoint: Vec<String>,
    /// The default command (empty: none).
    pub cmd: Vec<String>,
    /// `user`, `user:group`, `uid` or `uid:gid`; empty means root.
    pub user: String,
    /// Working directory; empty means `/`.
    pub working_dir: String,
    /// Signal that stops the container (`SIGTERM` when empty).
    pub stop_signal: String,
    /// The image's HEALTHCHECK, if it has one.
    pub healthcheck: Option<Healthcheck>,
    /// Ports the image declares (`80/tcp`), sorted.
    pub exposed_ports: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// An image's HEALTHCHECK (Docker's `HealthConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Time between checks (`None`: Docker's default 30 s).
    pub interval: Option<Duration>,
    /// Time a check may take (`None`: 30 s).
    pub timeout: Option<Duration>,
    /// Grace period after start (`None`: 0 s).
    pub start_period: Option<Duration>,
    /// Consecutive failures before unhealthy (`None`: 3).
    pub retries: Option<u32>,
}

/// The image configuration JSON as stored (only the fields `mini` reads; the
/// blob itself is kept byte for byte, since its digest is the image id).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<RawConfig>,
    /// Absent in a directory image's `config.json`; [`ConfigFile::parse`]
    /// refuses a missing one.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The run settings of a directory image's `config.json` (an OCI image
/// config whose `rootfs` may be left out), read as pulled and loaded images'
/// configs are.
pub fn parse_run_config(bytes: &[u8]) -> Result<ImageConfig, ImageError> {
    let file: ConfigFile = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::invalid("image config", e.to_string()))?;
    Ok(file.image_config())
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    healthcheck: Option<RawHealth>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealth {
    #[serde(default)]
    test: Option<Vec<String>>,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    start_period: Option<u64>,
    #[serde(default)]
    retries: Option<u32>,
}

impl ConfigFile {
    /// Parses a config blob and checks what the store relies on.
    pub fn parse(bytes: &[u8]) -> Result<ConfigFile, ImageError> {
        let file: ConfigFile = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::invalid("image config", e.to_string()))?;
        if file.rootfs.kind != "layers" {
            return Err(ImageError::invalid(
                "image config",
                format!("rootfs type {:?}, expected \"layers\"", file.rootfs.kind),
            ));
        }
        for d in &file.rootfs.diff_ids {
            super::reference::check_digest(d)
                .map_err(|e| ImageError::invalid("image config", e.to_string()))?;
        }
        if !file.os.is_empty() && file.os != "linux" {
            return Err(ImageError::Platform {
                found: format!("{}/{}", file.os, file.architecture),
            });
        }
        Ok(file)
    }

    /// The part a task uses.
    pub fn image_config(&self) -> ImageConfig {
        self.config
            .as_ref()
            .map(RawConfig::image_config)
            .unwrap_or_default()
    }
}

impl RawConfig {
    fn image_config(&self) -> ImageConfig {
        let c = self;
        // Docker keeps the durations in nanoseconds; 0 means "inherit / default".
        let nanos = |n: Option<u64>| n.filter(|n| *n > 0).map(Duration::from_nanos);
        ImageConfig {
            env: c.env.clone().unwrap_or_default(),
            entrypoint: c.entrypoint.clone().unwrap_or_default(),
            cmd: c.cmd.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            stop_signal: c.stop_signal.clone().unwrap_or_default(),
            healthcheck: c.healthcheck.as_ref().and_then(|h| {
                let test = h.test.clone().unwrap_or_default();
                (!test.is_empty()).then(|| Healthcheck {
                    test,
                    interval: nanos(h.interval),
                    timeout: nanos(h.timeout),
                    start_period: nanos(h.start_period),
                    retries: h.retries.filter(|r| *r > 0),
                })
            }),
            exposed_ports: c
                .exposed_ports
                .as_ref()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
            labels: c.labels.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_image_config_needs_no_rootfs_but_a_blob_does() {
        let json = br#"{"config":{"Cmd":["sh"],"WorkingDir":"/tmp","Env":null}}"#;
        let c = parse_run_config(json).unwrap();
        assert_eq!(
            (c.cmd.as_slice(), c.working_dir.as_str()),
            (&["sh".to_string()][..], "/tmp")
        );
        assert!(c.env.is_empty());
        assert!(parse_run_config(b"{").is_err());
        let err = ConfigFile::parse(json).unwrap_err().to_string();
        assert!(err.contains("expected \"layers\""), "{err}");
    }

    #[test]
    fn docker_config_fields_reach_the_task() {
        let json = br#"{"architecture":"amd64","os":"linux",
            "config":{"Env":["PATH=/bin","A=1"],"Entrypoint":["/init"],"Cmd":["sh"],
              "User":"nobody","WorkingDir":"/srv","StopSignal":"SIGQUIT",
              "Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2},
              "ExposedPorts":{"80/tcp":{},"53/udp":{}},"Labels":{"a":"b"}},
            "rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let file = ConfigFile::parse(json).unwrap();
        let c = file.image_config();
        assert_eq!(c.env, ["PATH=/bin", "A=1"]);
        assert_eq!(c.entrypoint, ["/init"]);
        assert_eq!(c.cmd, ["sh"]);
        assert_eq!(c.user, "nobody");
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.stop_signal, "SIGQUIT");
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "true"]);
        assert_eq!(h.interval, Some(Duration::from_secs(5)));
        assert_eq!(h.timeout, None);
        assert_eq!(h.retries, Some(2));
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn healthchecks_parse_as_docker_writes_them() {
        let c = parse_run_config(
            r#"{"config":{"Healthcheck":{"Test":["CMD","/bin/check","-q"],
                "Interval":2000000000,"Timeout":500000000,"StartPeriod":10000000000,"Retries":5}}}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            c.healthcheck,
            Some(Healthcheck {
                test: vec!["CMD".into(), "/bin/check".into(), "-q".into()],
                interval: Some(Duration::from_secs(2)),
                timeout: Some(Duration::from_millis(500)),
                start_period: Some(Duration::from_secs(10)),
                retries: Some(5),
            })
        );
        // `docker build` writes 0 for unset durations and retries: they mean "default".
        let zeros = parse_run_config(
            r#"{"config":{"Healthcheck":{"Test":["NONE"],"Interval":0,"Timeout":0,"StartPeriod":0,"Retries":0}}}"#.as_bytes(),
        )
        .unwrap()
        .healthcheck
        .unwrap();
        assert_eq!(zeros.test, ["NONE"]);
        assert_eq!(
            (
                zeros.interval,
                zeros.timeout,
                zeros.start_period,
                zeros.retries
            ),
            (None, None, None, None)
        );
        // No Healthcheck, or one with no Test: no check.
        assert_eq!(
            parse_run_config(r#"{"config":{}}"#.as_bytes())
                .unwrap()
                .healthcheck,
            None
        );
        assert_eq!(
            parse_run_config(r#"{"config":{"Healthcheck":{"Interval":1}}}"#.as_bytes())
                .unwrap()
                .healthcheck,
            None
        );
        assert!(parse_run_config("{".as_bytes()).is_err());
    }

    #[test]
    fn other_platforms_and_bad_diff_ids_are_refused() {
        let windows =
            br#"{"os":"windows","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert!(matches!(
            ConfigFile::parse(windows),
            Err(ImageError::Platform { .. })
        ));
        let bad = br#"{"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:zz"]}}"#;
        assert!(matches!(
            ConfigFile::parse(bad),
            Err(ImageError::Invalid { .. })
        ));
    }
}
