//! Tables and JSON on stdout.

use serde::Serialize;

/// `--format` of list commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header row.
    #[default]
    Table,
    /// One JSON array.
    Json,
}

/// Prints rows as aligned columns: every column as wide as its widest cell,
/// three spaces between columns, no trailing spaces.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    write_stdout(&render_table(header, rows));
}

/// Writes to stdout; a closed pipe (`mini node ls | head -1`) ends the
/// program quietly instead of panicking.
pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {err}");
        std::process::exit(1);
    }
}

/// The text [`print_table`] prints.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints any serializable value as pretty JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    write_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?));
    Ok(())
}

/// "3 seconds ago", "8 minutes ago": how long before `now_ms` `then_ms` was.
pub fn ago(then_ms: i64, now_ms: i64) -> String {
    let secs = ((now_ms - then_ms).max(0) / 1000) as u64;
    let (n, unit) = match secs {
        0 => return "Less than a second ago".to_string(),
        1..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86399 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    if n == 1 {
        format!("About a {unit} ago").replace("About a hour", "About an hour")
    } else {
        format!("{n} {unit}s ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_space() {
        let out = render_table(
            &["ID", "NAME", "DRIVER"],
            &[
                vec!["abc".into(), "demonet".into(), "overlay".into()],
                vec!["x".into(), "n".into(), "o".into()],
            ],
        );
        assert_eq!(
            out,
            "ID    NAME      DRIVER\nabc   demonet   overlay\nx     n         o\n"
        );
    }

    #[test]
    fn ago_reads_like_docker() {
        assert_eq!(ago(0, 500), "Less than a second ago");
        assert_eq!(ago(0, 3_000), "3 seconds ago");
        assert_eq!(ago(0, 60_000), "About a minute ago");
        assert_eq!(ago(0, 8 * 60_000), "8 minutes ago");
        assert_eq!(ago(0, 3_600_000), "About an hour ago");
    }
}
