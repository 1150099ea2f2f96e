//! Registry credentials of `mini login`, kept as Docker keeps them: a JSON
//! file (`$MINI_CONFIG/config.json`, default `~/.mini/config.json`) readable
//! by its owner only, `{"auths": {"HOST[:PORT]": {"auth": base64(user:password)}}}`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mini_proto::v1::ImageRegistryAuth;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Entry {
    auth: String,
}

/// The credentials file, loaded.
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    file: File,
}

/// Where the file lives.
fn config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MINI_CONFIG") {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set (or set MINI_CONFIG)")?;
    Ok(PathBuf::from(home).join(".mini/config.json"))
}

impl Credentials {
    /// Reads the file (an absent file holds no credentials).
    pub fn load() -> Result<Credentials> {
        let path = config_path()?;
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not valid JSON", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Credentials { path, file })
    }

    /// The credentials stored for `registry`, if any.
    pub fn get(&self, registry: &str) -> Option<ImageRegistryAuth> {
        let entry = self.file.auths.get(registry)?;
        let decoded = STANDARD.decode(&entry.auth).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        Some(ImageRegistryAuth {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    /// Stores credentials for `registry`.
    pub fn set(&mut self, registry: &str, auth: ImageRegistryAuth) {
        let auth = STANDARD.encode(format!("{}:{}", auth.username, auth.password));
        self.file.auths.insert(registry.to_string(), Entry { auth });
    }

    /// Forgets `registry`; whether there was anything to forget.
    pub fn remove(&mut self, registry: &str) -> bool {
        self.file.auths.remove(registry).is_some()
    }

    /// Writes the file, mode 0600 in a 0700 directory, replacing it atomically.
    pub fn save(&self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .context("credentials path has no directory")?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&serde_json::to_vec_pretty(&self.file)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }
}
