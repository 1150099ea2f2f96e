//! Docker's image reference grammar (`github.com/distribution/reference`):
//! `[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`, normalized the way `docker pull`
//! normalizes it — no domain means Docker Hub (`docker.io`), a one-component
//! Hub path gets `library/`, `index.docker.io` means `docker.io`, and no tag
//! and no digest means `:latest`.

use std::fmt;

/// Docker Hub's canonical domain.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag assumed when a reference names none.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository name (domain and path) Docker accepts.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A reference that does not follow Docker's grammar, with Docker's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("invalid reference format: repository name must have at least one component")]
    Empty,
    /// Anything else the grammar refuses.
    #[error("invalid reference format: {0:?}")]
    Format(String),
    /// Upper case letters in the repository path.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// A bare 64-hex string (an image id, not a name).
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    /// More than [`NAME_TOTAL_LENGTH_MAX`] characters.
    #[error("invalid reference format: repository name must not be more than 255 characters")]
    NameTooLong,
    /// A digest whose algorithm or length is wrong.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    Digest(String),
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry domain, with its port if any (`docker.io`, `registry.local:5000`).
    pub domain: String,
    /// Repository path inside the registry (`library/alpine`, `team/app`).
    pub path: String,
    /// The tag, if the reference names one (see [`Reference::with_default_tag`]).
    pub tag: Option<String>,
    /// The manifest digest, if the reference pins one (`sha256:...`).
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `input` as `docker pull` does (`ParseNormalizedNamed`), keeping
    /// the tag absent when none is given.
    pub fn parse_normalized(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() == 64 && is_hex(input) {
            return Err(ReferenceError::HexName(input.to_string()));
        }
        let (domain, remainder) = split_docker_domain(input);
        // The remainder's name part (before a tag or digest) must be lowercase.
        let name_end = remainder.find([':', '@']).unwrap_or(remainder.len());
        let remote = &remainder[..name_end];
        if remote.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(remote.to_string()));
        }
        parse(&format!("{domain}/{remainder}"), input)
    }

    /// [`Reference::parse_normalized`], then `:latest` when there is neither
    /// a tag nor a digest (`TagNameOnly`): what a pull fetches.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        Ok(Reference::parse_normalized(input)?.with_default_tag())
    }

    /// The same reference with tag `latest` if it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `domain/path`, e.g. `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name as Docker shows it: no `docker.io/`, no `library/`
    /// (`FamiliarName`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DOCKER_HUB {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The whole reference as Docker shows it (`FamiliarString`).
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// Whether this reference lives on Docker Hub (and so goes through mirrors).
    pub fn is_docker_hub(&self) -> bool {
        self.domain == DOCKER_HUB
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
    }
}

impl fmt::Display for Reference {
    /// The full form, e.g. `docker.io/library/alpine:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// `splitDockerDomain`: the first component is a domain only if it has a
/// `.` or `:`, is `localhost`, or has upper case letters.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            if !first.contains(['.', ':']) && first != "localhost" && first.to_lowercase() == first
            {
                (DOCKER_HUB.to_string(), name.to_string())
            } else {
                (first.to_string(), name[i + 1..].to_string())
            }
        }
        None => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = DOCKER_HUB.to_string();
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

/// Parses a full `domain/path[:tag][@digest]` (`ReferenceRegexp`).
fn parse(full: &str, input: &str) -> Result<Reference, ReferenceError> {
    let bad = || ReferenceError::Format(input.to_string());
    let (rest, digest) = match full.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (full, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(bad());
    }
    if let Some(digest) = digest {
        check_digest(digest).map_err(|_| {
            if valid_digest_syntax(digest) {
                ReferenceError::Digest(digest.to_string())
            } else {
                bad()
            }
        })?;
    }
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    let (domain, path) = name.split_once('/').ok_or_else(bad)?;
    if !valid_domain_and_port(domain) || !path.split('/').all(valid_path_component) {
        return Err(bad());
    }
    Ok(Reference {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or one or more `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host(:port)?` where host is a DNS name or a bracketed IPv6 address.
fn valid_domain_and_port(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let addr = &rest[..end];
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    match host {
        None => true,
        Some(host) => host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }),
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
fn valid_digest_syntax(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|x| x.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && is_hex(hex)
}

/// A digest this store can verify: `sha256:` and 64 lowercase hex digits.
pub fn check_digest(d: &str) -> Result<(), ReferenceError> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(ReferenceError::Digest(d.to_string())),
    }
}

#[cfg(test)]
mod tests {
    //! Tables from distribution/reference's `normalize_test.go`.
    use super::*;

    #[test]
    fn docker_valid_and_invalid_repository_names() {
        let valid = [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "docker.io/library/debian",
            "docker.io/debian",
            "index.docker.io/docker/docker",
            "index.docker.io/library/debian",
            "index.docker.io/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/debian",
            "192.168.0.1",
            "192.168.0.1:80",
            "192.168.0.1:8/debian",
            "192.168.0.2:25000/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000/docker/docker",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "Docker/docker",
            "DOCKER/docker",
            // TestValidateRemoteName
            "docker-rules/docker",
            "docker---rules/docker",
            "doc/docker",
            "d/docker",
            "jess/t",
            "dock__er/docker",
        ];
        for name in valid {
            assert!(
                Reference::parse_normalized(name).is_ok(),
                "{name} should be valid: {:?}",
                Reference::parse_normalized(name)
            );
        }
        let long_namespace = format!("{}/docker", "this_is_not_a_valid_namespace".repeat(10));
        let invalid = [
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            // TestValidateRemoteName
            "docker-/docker",
            "-docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
            &long_namespace,
            "",
        ];
        for name in invalid {
            assert!(
                Reference::parse_normalized(name).is_err(),
                "{name} should be invalid, got {:?}",
                Reference::parse_normalized(name)
            );
        }
    }

    #[test]
    fn docker_repository_info_table() {
        // (remote name, familiar name, full name, ambiguous name, domain)
        let table = [
            (
                "fooo/bar",
                "fooo/bar",
                "docker.io/fooo/bar",
                "index.docker.io/fooo/bar",
                "docker.io",
            ),
            (
                "library/ubuntu",
                "ubuntu",
                "docker.io/library/ubuntu",
                "library/ubuntu",
                "docker.io",
            ),
            (
                "nonlibrary/ubuntu",
                "nonlibrary/ubuntu",
                "docker.io/nonlibrary/ubuntu",
                "",
                "docker.io",
            ),
            (
                "other/library",
                "other/library",
                "docker.io/other/library",
                "",
                "docker.io",
            ),
            (
                "private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "private/moonbase",
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "",
                "example.com",
            ),
            (
                "privatebase",
                "example.com/privatebase",
                "example.com/privatebase",
                "",
                "example.com",
            ),
            (
                "private/moonbase",
                "example.com:8000/private/moonbase",
                "example.com:8000/private/moonbase",
                "",
                "example.com:8000",
            ),
            (
                "privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "",
                "example.com:8000",
            ),
            (
                "library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
                "docker.io",
            ),
            (
                "library/foo",
                "foo",
                "docker.io/library/foo",
                "docker.io/foo",
                "docker.io",
            ),
            (
                "library/foo/bar",
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "",
                "docker.io",
            ),
            (
                "store/foo/bar",
                "store/foo/bar",
                "docker.io/store/foo/bar",
                "",
                "docker.io",
            ),
            ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
            ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
        ];
        for (remote, familiar, full, ambiguous, domain) in table {
            let mut inputs = vec![familiar, full];
            if !ambiguous.is_empty() {
                inputs.push(ambiguous);
            }
            for input in inputs {
                let r =
                    Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(r.path, remote, "remote name of {input}");
                assert_eq!(r.familiar_name(), familiar, "familiar name of {input}");
                assert_eq!(r.to_string(), full, "full name of {input}");
                assert_eq!(r.domain, domain, "domain of {input}");
            }
        }
    }

    #[test]
    fn docker_split_hostname_table() {
        let table = [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "docker.io", "test_com/foo"),
            ("docker/migrator", "docker.io", "docker/migrator"),
            ("test.com:8080/foo", "test.com:8080", "foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("foo", "docker.io", "library/foo"),
            ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
            ("docker.io/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ];
        for (input, domain, path) in table {
            let r = Reference::parse_normalized(input).unwrap();
            assert_eq!(
                (r.domain.as_str(), r.path.as_str()),
                (domain, path),
                "{input}"
            );
        }
    }

    #[test]
    fn docker_tag_and_digest() {
        let short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
        let r = Reference::parse(short).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
        assert_eq!(r.familiar_string(), short);
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(r.digest.is_some());
        // ParseAnyReference's named cases.
        let d = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
        for (input, equivalent) in [
            ("redis", "docker.io/library/redis".to_string()),
            ("redis:latest", "docker.io/library/redis:latest".to_string()),
            (
                "docker.io/library/redis:latest",
                "docker.io/library/redis:latest".to_string(),
            ),
            (
                &format!("redis@{d}"),
                format!("docker.io/library/redis@{d}"),
            ),
            ("dmcgowan/myapp", "docker.io/dmcgowan/myapp".to_string()),
            (
                "dmcgowan/myapp:latest",
                "docker.io/dmcgowan/myapp:latest".to_string(),
            ),
            (
                &format!("dmcgowan/myapp@{d}"),
                format!("docker.io/dmcgowan/myapp@{d}"),
            ),
            ("dbcc1", "docker.io/library/dbcc1".to_string()),
        ] {
            assert_eq!(
                Reference::parse_normalized(input).unwrap().to_string(),
                equivalent
            );
        }
        // Invalid components (TestInvalidReferenceComponents).
        assert!(Reference::parse("-foo").is_err());
        assert!(Reference::parse("busybox:-foo").is_err());
        assert!(Reference::parse("busybox@foo").is_err());
        assert!(matches!(
            Reference::parse("busybox@sha256:abc"),
            Err(ReferenceError::Format(_))
        ));
    }

    #[test]
    fn defaults_of_the_brief() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
            (
                "alpine:3.19",
                "docker.io/library/alpine:3.19",
                "alpine:3.19",
            ),
            (
                "registry.local:5000/team/app:1.2",
                "registry.local:5000/team/app:1.2",
                "registry.local:5000/team/app:1.2",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), full);
            assert_eq!(r.familiar_string(), familiar);
        }
        let pinned = Reference::parse(
            "alpine@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
        )
        .unwrap();
        assert_eq!(pinned.tag, None, "a digest reference gets no default tag");
        assert!(matches!(
            Reference::parse("Alpine"),
            Err(ReferenceError::Uppercase(_))
        ));
    }
}
