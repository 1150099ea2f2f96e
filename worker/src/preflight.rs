//! The start-up check of a node (`mini daemon --check`, and at every daemon start): the kernel
//! features the network driver needs and the programs the daemon runs, one line each; a missing
//! one names the Debian package or the kernel option to fix it.
//!
//! Missing kernel networking (VXLAN, bridges, veth, nf_tables) is fatal: no task could get a
//! network. Missing `runc` or overlayfs only disables image tasks (they fail with the line's
//! message); `host` tasks still run. The daemon itself runs no `nft`: nftables is programmed
//! over netlink.

use std::fmt;
use std::path::PathBuf;

use mini_netdriver::preflight::Feature;

/// One thing the node needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    /// A kernel feature of the network driver, tried for real.
    Kernel(Feature),
    /// The overlay filesystem (image tasks' root filesystems).
    Overlayfs,
    /// The `runc` program (image tasks).
    Runc,
}

impl Item {
    /// Every item, in report order.
    pub fn all() -> Vec<Item> {
        let mut v: Vec<Item> = Feature::ALL.into_iter().map(Item::Kernel).collect();
        v.extend([Item::Overlayfs, Item::Runc]);
        v
    }

    /// The name on the report line.
    pub fn name(self) -> &'static str {
        match self {
            Item::Kernel(Feature::Vxlan) => "vxlan",
            Item::Kernel(Feature::Bridge) => "bridge",
            Item::Kernel(Feature::Veth) => "veth",
            Item::Kernel(Feature::NfTables) => "nf_tables",
            Item::Overlayfs => "overlay",
            Item::Runc => "runc",
        }
    }

    /// True when the daemon cannot work without it.
    pub fn fatal(self) -> bool {
        matches!(self, Item::Kernel(_))
    }

    /// The line of a missing item: what is missing, how to get it, what it disables.
    pub fn missing_line(self) -> String {
        match self {
            Item::Kernel(Feature::Vxlan) => {
                "vxlan missing: kernel option CONFIG_VXLAN (module vxlan)".into()
            }
            Item::Kernel(Feature::Bridge) => {
                "bridge missing: kernel option CONFIG_BRIDGE (module bridge)".into()
            }
            Item::Kernel(Feature::Veth) => {
                "veth missing: kernel option CONFIG_VETH (module veth)".into()
            }
            Item::Kernel(Feature::NfTables) => "nf_tables missing: kernel options \
                CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_CT, CONFIG_NFT_MASQ \
                (modules nf_tables, nft_chain_nat, nft_ct, nft_masq)"
                .into(),
            Item::Overlayfs => "overlay missing: kernel option CONFIG_OVERLAY_FS (module \
                overlay) (needed to run image tasks)"
                .into(),
            Item::Runc => {
                "runc not found: install the Debian package runc (needed to run image tasks)".into()
            }
        }
    }
}

/// Looks at the machine. [`SystemProbe`] is the real one; tests use fakes.
pub trait Probe {
    /// Tries the kernel features; `Err` carries the kernel's answer.
    fn kernel(&self, features: &[Feature]) -> Vec<(Feature, Result<(), String>)>;
    /// True when the kernel has (or can load) the overlay filesystem.
    fn overlayfs(&self) -> bool;
    /// Where program `name` is, as the daemon would find it.
    fn program(&self, name: &str) -> Option<PathBuf>;
}

/// The real machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemProbe;

impl Probe for SystemProbe {
    fn kernel(&self, features: &[Feature]) -> Vec<(Feature, Result<(), String>)> {
        mini_netdriver::preflight::probe(features)
    }

    fn overlayfs(&self) -> bool {
        let listed = std::fs::read_to_string("/proc/filesystems").is_ok_and(|fs| {
            fs.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        });
        if listed {
            return true;
        }
        // Not loaded yet: loadable on demand if the running kernel ships the module.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let dir = PathBuf::from("/lib/modules").join(release.trim());
        ["modules.dep", "modules.builtin"].iter().any(|f| {
            std::fs::read_to_string(dir.join(f))
                .is_ok_and(|s| s.lines().any(|l| l.contains("/overlay.ko")))
        })
    }

    fn program(&self, name: &str) -> Option<PathBuf> {
        crate::runtime::find_in_path(name)
    }
}

/// The result for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What was checked.
    pub item: Item,
    /// `Ok(detail)` (e.g. the program's path) or `Err(why)` (the kernel's answer).
    pub result: Result<String, String>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(detail) if detail.is_empty() => write!(f, "ok       {}", self.item.name()),
            Ok(detail) => write!(f, "ok       {} ({detail})", self.item.name()),
            Err(_) => write!(f, "missing  {}", self.item.missing_line()),
        }
    }
}

/// The whole check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One line per item, in [`Item::all`] order.
    pub lines: Vec<Line>,
}

impl Report {
    /// Checks every item with `probe`.
    pub fn run(probe: &dyn Probe) -> Report {
        let mut lines: Vec<Line> = probe
            .kernel(&Feature::ALL)
            .into_iter()
            .map(|(f, r)| Line {
                item: Item::Kernel(f),
                result: r.map(|()| String::new()),
            })
            .collect();
        lines.push(Line {
            item: Item::Overlayfs,
            result: if probe.overlayfs() {
                Ok(String::new())
            } else {
                Err("not in /proc/filesystems nor among the kernel's modules".into())
            },
        });
        lines.push(Line {
            item: Item::Runc,
            result: probe
                .program("runc")
                .map(|p| p.display().to_string())
                .ok_or_else(|| "not in PATH".into()),
        });
        Report { lines }
    }

    /// The missing items.
    pub fn missing(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.result.is_err())
    }

    /// True when nothing fatal is missing: the daemon can run (maybe without image tasks).
    pub fn ok(&self) -> bool {
        self.missing().all(|l| !l.item.fatal())
    }

    /// The missing fatal items' lines.
    pub fn fatal_lines(&self) -> Vec<String> {
        self.missing()
            .filter(|l| l.item.fatal())
            .map(|l| l.item.missing_line())
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        kernel_missing: Vec<Feature>,
        no_overlay: bool,
        no_runc: bool,
    }

    impl Probe for Fake {
        fn kernel(&self, features: &[Feature]) -> Vec<(Feature, Result<(), String>)> {
            features
                .iter()
                .map(|f| {
                    let r = if self.kernel_missing.contains(f) {
                        Err("Operation not supported".to_string())
                    } else {
                        Ok(())
                    };
                    (*f, r)
                })
                .collect()
        }
        fn overlayfs(&self) -> bool {
            !self.no_overlay
        }
        fn program(&self, name: &str) -> Option<PathBuf> {
            (!self.no_runc).then(|| PathBuf::from("/usr/sbin").join(name))
        }
    }

    #[test]
    fn everything_present_is_one_ok_line_each() {
        let r = Report::run(&Fake::default());
        assert!(r.ok());
        assert_eq!(
            r.to_string(),
            "ok       vxlan\nok       bridge\nok       veth\nok       nf_tables\n\
             ok       overlay\nok       runc (/usr/sbin/runc)\n"
        );
    }

    #[test]
    fn missing_runc_or_overlay_only_disables_image_tasks() {
        let r = Report::run(&Fake {
            no_runc: true,
            no_overlay: true,
            ..Fake::default()
        });
        assert!(r.ok(), "the daemon can still run host tasks");
        let text = r.to_string();
        assert!(text.contains(
            "missing  runc not found: install the Debian package runc (needed to run image tasks)\n"
        ));
        assert!(text.contains("missing  overlay missing: kernel option CONFIG_OVERLAY_FS"));
        assert!(r.fatal_lines().is_empty());
    }

    #[test]
    fn missing_kernel_networking_is_fatal_and_names_the_option() {
        let r = Report::run(&Fake {
            kernel_missing: vec![Feature::Vxlan],
            ..Fake::default()
        });
        assert!(!r.ok());
        assert_eq!(
            r.fatal_lines(),
            vec!["vxlan missing: kernel option CONFIG_VXLAN (module vxlan)".to_string()]
        );
        assert_eq!(r.lines.len(), Item::all().len(), "one line per item");
    }
}
