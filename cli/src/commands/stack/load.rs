//! Reading compose files: YAML, variable interpolation, merging several files, and the
//! typed [`ComposeFile`] with warnings for the keys it does not know.
//!
//! As `docker stack deploy` does: variables come from the environment of the command only
//! (a `.env` file beside the compose file is NOT read), interpolation applies to values (not
//! keys) after YAML parsing, and later `-c` files override earlier ones.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::compose::ComposeFile;

/// Looks a variable up (the process environment, or a table in tests).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One compose file's text and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as the user gave it (`-`: standard input).
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl Source {
    /// Reads `path` (`-`: standard input).
    pub fn read(path: &str) -> Result<Source, String> {
        let text = if path == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("cannot read the compose file from standard input: {e}"))?;
            text
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read compose file {path}: {e}"))?
        };
        Ok(Source {
            name: path.to_string(),
            text,
        })
    }

    /// The directory relative paths in the file are resolved from.
    pub fn dir(&self) -> PathBuf {
        if self.name == "-" {
            return std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        }
        let dir = Path::new(&self.name)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
    }
}

/// The merged, interpolated, typed compose files.
#[derive(Debug)]
pub struct Loaded {
    /// The typed content.
    pub file: ComposeFile,
    /// What the user should know: unknown keys, unset variables.
    pub warnings: Vec<String>,
    /// The first file's directory: relative paths (`env_file`, bind sources, `file:`) are
    /// resolved from it, as Docker does.
    pub dir: PathBuf,
}

/// Parses, interpolates and merges `sources` in order (later ones override).
pub fn load(sources: &[Source], env: Lookup<'_>) -> Result<Loaded, String> {
    let mut warnings = Vec::new();
    let mut merged = Value::Mapping(Mapping::new());
    for source in sources {
        let mut value: Value =
            serde_yaml::from_str(&source.text).map_err(|e| format!("{}: {e}", source.name))?;
        if value.is_null() {
            value = Value::Mapping(Mapping::new());
        }
        if !value.is_mapping() {
            return Err(format!(
                "{}: a compose file must be a mapping (services:, networks:, ...) at its top level",
                source.name
            ));
        }
        value
            .apply_merge()
            .map_err(|e| format!("{}: {e}", source.name))?;
        interpolate_value(&mut value, "", env, &mut warnings)
            .map_err(|e| format!("{}: {e}", source.name))?;
        normalize(&mut value);
        merge(&mut merged, value);
    }
    let mut unknown = Vec::new();
    let typed: Result<ComposeFile, _> =
        serde_ignored::deserialize(merged, |path| unknown.push(path.to_string()));
    let file = match typed {
        Ok(file) => file,
        Err(err) => return Err(locate(sources, err)),
    };
    // serde_ignored writes `?` for the step into an Option.
    let mut unknown: Vec<String> = unknown
        .into_iter()
        .map(|p| {
            p.split('.')
                .filter(|part| *part != "?")
                .collect::<Vec<_>>()
                .join(".")
        })
        .filter(|p| !p.split('.').any(|part| part.starts_with("x-")))
        .collect();
    unknown.sort();
    for path in unknown {
        warnings.push(format!("unknown key {path} is ignored"));
    }
    let dir = sources
        .first()
        .map_or_else(|| PathBuf::from("."), Source::dir);
    Ok(Loaded {
        file,
        warnings,
        dir,
    })
}

/// The error of the merged files, with the file, line and column it comes from: each file
/// is parsed on its own as written (before interpolation and merging), which gives serde_yaml's
/// location; when no file fails alone, the merged content's error.
fn locate(sources: &[Source], merged_err: serde_yaml::Error) -> String {
    for source in sources {
        if let Err(err) = serde_yaml::from_str::<ComposeFile>(&source.text) {
            return format!("{}: {err}", source.name);
        }
    }
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    format!("{}: {merged_err}", names.join(" + "))
}

/// Replaces variables in every string value of `value` (not in keys).
fn interpolate_value(
    value: &mut Value,
    path: &str,
    env: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    match value {
        Value::String(s) => {
            *s = interpolate(s, env, warnings).map_err(|e| {
                let at = if path.is_empty() { "(top level)" } else { path };
                format!("{at}: {e}")
            })?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env, warnings)?;
            }
        }
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let sub = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                interpolate_value(v, &sub, env, warnings)?;
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, path, env, warnings)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// The compose specification's interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`,
/// `${VAR+replacement}` (defaults and replacements may hold variables), `$$` for a `$`.
/// An unset variable without default is an empty string, with a warning (Docker's words).
pub fn interpolate(s: &str, env: Lookup<'_>, warnings: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        if let Some(inner) = after.strip_prefix('{') {
            let end = closing_brace(inner).ok_or_else(|| {
                format!("invalid interpolation format in {s:?}: a ${{ is not closed")
            })?;
            out.push_str(&braced(&inner[..end], s, env, warnings)?);
            rest = &inner[end + 1..];
            continue;
        }
        let name_len = name_length(after);
        if name_len == 0 {
            return Err(format!(
                "invalid interpolation format in {s:?}: a $ must be followed by a variable \
                 name, {{NAME}} or another $ (write $$ for a literal $)"
            ));
        }
        out.push_str(&lookup(&after[..name_len], env, warnings));
        rest = &after[name_len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name at the start of `s` (`[A-Za-z_][A-Za-z0-9_]*`).
fn name_length(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// The index of the `}` closing a `${` whose content starts `s` (nested `${...}` allowed).
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The value of one `${...}` (its content `expr`).
fn braced(
    expr: &str,
    whole: &str,
    env: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let name_len = name_length(expr);
    let name = &expr[..name_len];
    let op = &expr[name_len..];
    if name.is_empty() {
        return Err(format!(
            "invalid interpolation format in {whole:?}: ${{{expr}}} names no variable"
        ));
    }
    let value = env(name);
    let set = value.is_some();
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let (kind, arg) = if op.is_empty() {
        return Ok(lookup(name, env, warnings));
    } else if let Some(a) = op.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = op.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = op.strip_prefix(":+") {
        (":+", a)
    } else if let Some(a) = op.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = op.strip_prefix('?') {
        ("?", a)
    } else if let Some(a) = op.strip_prefix('+') {
        ("+", a)
    } else {
        return Err(format!(
            "invalid interpolation format in {whole:?}: ${{{expr}}} (expected ${{{name}}}, \
             ${{{name}:-default}}, ${{{name}-default}}, ${{{name}:?error}} or ${{{name}:+value}})"
        ));
    };
    let value = value.unwrap_or_default();
    Ok(match kind {
        ":-" if set_nonempty => value,
        "-" if set => value,
        ":-" | "-" => interpolate(arg, env, warnings)?,
        ":?" if set_nonempty => value,
        "?" if set => value,
        ":?" | "?" => {
            let message = interpolate(arg, env, warnings)?;
            return Err(format!(
                "required variable {name} is missing a value{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ));
        }
        ":+" if set_nonempty => interpolate(arg, env, warnings)?,
        "+" if set => interpolate(arg, env, warnings)?,
        _ => String::new(),
    })
}

/// A variable's value; unset: empty, with Docker's warning (once per variable).
fn lookup(name: &str, env: Lookup<'_>, warnings: &mut Vec<String>) -> String {
    env(name).unwrap_or_else(|| {
        let warning = format!("The {name} variable is not set. Defaulting to a blank string.");
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
        String::new()
    })
}

/// Rewrites the keys that may be written as a list or as a mapping into mappings, so that
/// merging two files merges them key by key (as compose does).
fn normalize(value: &mut Value) {
    let Some(services) = value.get_mut("services").and_then(Value::as_mapping_mut) else {
        return;
    };
    for (_, service) in services.iter_mut() {
        let Some(service) = service.as_mapping_mut() else {
            continue;
        };
        for key in ["environment", "labels"] {
            if let Some(v) = service.get_mut(key) {
                list_to_map(v, '=');
            }
        }
        if let Some(v) = service.get_mut("networks") {
            list_to_map(v, '\0');
        }
        if let Some(labels) = service.get_mut("deploy").and_then(|d| d.get_mut("labels")) {
            list_to_map(labels, '=');
        }
    }
}

/// `[K=V, K2]` → `{K: V, K2: null}` (`sep` `'\0'`: the whole item is the key).
fn list_to_map(v: &mut Value, sep: char) {
    let Value::Sequence(items) = v else {
        return;
    };
    let mut map = Mapping::new();
    for item in items.iter() {
        let text = match item {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        match text.split_once(sep) {
            Some((k, val)) if sep != '\0' => {
                map.insert(Value::String(k.into()), Value::String(val.into()));
            }
            _ => {
                map.insert(Value::String(text), Value::Null);
            }
        }
    }
    *v = Value::Mapping(map);
}

/// Merges `over` into `base` as compose merges files: mappings key by key, the service
/// lists of mounts, ports, secrets and configs entry by entry (same target: the later one),
/// every other value replaced by the later file's; a key with no value keeps the earlier one.
fn merge(base: &mut Value, over: Value) {
    merge_at(base, over, "");
}

fn merge_at(base: &mut Value, over: Value, key: &str) {
    match (base, over) {
        (_, Value::Null) => {}
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                let name = k.as_str().unwrap_or_default().to_string();
                match b.get_mut(&k) {
                    Some(existing) => merge_at(existing, v, &name),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o))
            if matches!(key, "ports" | "volumes" | "secrets" | "configs") =>
        {
            for item in o {
                let id = identity(&item, key);
                b.retain(|x| identity(x, key) != id);
                b.push(item);
            }
        }
        (b, o) => *b = o,
    }
}

/// What makes two entries of a mergeable list the same entry: the target of a mount, a
/// secret or a config; the whole entry for ports.
fn identity(item: &Value, key: &str) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default(),
    };
    match (key, item) {
        ("volumes", Value::String(s)) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [target] | [_, target] | [_, target, _] => target.to_string(),
                _ => s.clone(),
            }
        }
        ("volumes", Value::Mapping(m)) => m.get("target").map(text).unwrap_or_default(),
        ("secrets" | "configs", Value::Mapping(m)) => m
            .get("target")
            .or_else(|| m.get("source"))
            .map(text)
            .unwrap_or_default(),
        _ => text(item),
    }
}
