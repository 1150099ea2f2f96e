//! Tables and JSON on stdout.

use serde::Serialize;

/// Prints rows as aligned columns as Docker's tabwriter does (`tabwriter.NewWriter(out, 10,
/// 1, 3, ' ', 0)`): every column as wide as its widest cell plus three spaces, and at least
/// 10; no trailing spaces.
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
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([header.len()])
        .max()
        .unwrap_or(0);
    let mut widths: Vec<usize> = vec![0; columns];
    let header_row: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in rows.iter().chain([&header_row]) {
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
                let pad = (widths[i] + 3).max(10) - cell.chars().count();
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

/// go-units' `HumanDuration`, the one wording of ages everywhere ("Less than a second",
/// "About a minute", "3 hours", "2 weeks"), of a duration in milliseconds.
pub fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let mins = secs / 60;
    // Go rounds hours: int(d.Hours() + 0.5).
    let hours = (ms.max(0) as f64 / 3_600_000.0 + 0.5) as i64;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", (ms.max(0) / 3_600_000) / 24 / 365),
    }
}

/// "3 seconds ago", "About a minute ago": how long before `now_ms` `then_ms` was.
pub fn ago(then_ms: i64, now_ms: i64) -> String {
    format!("{} ago", human_duration(now_ms - then_ms))
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
            "ID        NAME      DRIVER\nabc       demonet   overlay\nx         n         o\n"
        );
    }

    #[test]
    fn durations_read_like_go_units_at_every_boundary() {
        let s = 1000;
        let (m, h, d) = (60 * s, 3600 * s, 86_400 * s);
        for (ms, want) in [
            (0, "Less than a second"),
            (999, "Less than a second"),
            (s, "1 second"),
            (2 * s, "2 seconds"),
            (59 * s, "59 seconds"),
            (m, "About a minute"),
            (2 * m - 1, "About a minute"),
            (2 * m, "2 minutes"),
            (59 * m, "59 minutes"),
            (h, "About an hour"),
            (h + 29 * m, "About an hour"),
            (h + 30 * m, "2 hours"),
            (47 * h, "47 hours"),
            (48 * h, "2 days"),
            (13 * d, "13 days"),
            (14 * d, "2 weeks"),
            (59 * d, "8 weeks"),
            (60 * d, "2 months"),
            (729 * d, "24 months"),
            (730 * d, "2 years"),
        ] {
            assert_eq!(human_duration(ms), want, "{ms} ms");
        }
        assert_eq!(ago(0, 500), "Less than a second ago");
        assert_eq!(ago(0, 3 * m), "3 minutes ago");
        assert_eq!(ago(5_000, 0), "Less than a second ago");
    }
}
