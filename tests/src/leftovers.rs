//! What a lab left behind, found by the name it gives everything it makes.

/// Network namespaces (`/run/netns`) named `NAME-…`.
pub fn namespaces(name: &str) -> Vec<String> {
    let prefix = format!("{name}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Lines of this process's mount table that mention `name`.
pub fn mounts(name: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(name))
        .map(str::to_string)
        .collect()
}
