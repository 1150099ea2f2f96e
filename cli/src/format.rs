//! What every `ls` and `ps` shares, as Docker defines it: the flags ([`ListArgs`]: `-q`,
//! `-f/--filter`, `--format`, `--no-trunc`), the filter parser ([`Filters`]) and the output
//! of rows ([`print_rows`]: a table, IDs only, a Go template per row, or JSON lines), plus
//! `--format` of `inspect` ([`print_inspect`]).
//!
//! A row is a JSON object with Docker's field names (`ID`, `Name`, ...): the same object
//! fills the table's cells, `-q`'s IDs, templates and `--format json`, so they never
//! disagree. The row models of each object kind are in [`crate::rows`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::output::{render_table, write_stdout};
use crate::template::{Mode, Template};

/// The flags of every `ls` and `ps`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ListArgs {
    /// Only display IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (KEY=VALUE, repeatable).
    #[arg(short, long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template: 'table' (default), 'table TEMPLATE' (a table
    /// with the template's columns), 'json' (one JSON object per line), or a Go template
    /// ('{{.Name}}').
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
}

/// An error printed as it is, with no `error:` in front (Docker's "Error response from
/// daemon: ..." wording).
#[derive(Debug)]
pub struct Verbatim(pub String);

impl std::fmt::Display for Verbatim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Verbatim {}

/// Parsed `--filter KEY=VALUE` flags: every value of each key. Values of one key are
/// alternatives (any may match); different keys must all match.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `args`, refusing a key not in `allowed` with Docker's wording.
    pub fn parse(args: &[String], allowed: &[&str]) -> Result<Filters, Verbatim> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for arg in args {
            let Some((key, value)) = arg.split_once('=') else {
                return Err(Verbatim(format!(
                    "bad format of filter (expected name=value): {arg}"
                )));
            };
            let key = key.trim().to_ascii_lowercase();
            if !allowed.contains(&key.as_str()) {
                return Err(Verbatim(format!(
                    "Error response from daemon: Invalid filter '{key}'"
                )));
            }
            map.entry(key).or_default().push(value.trim().to_string());
        }
        Ok(Filters(map))
    }

    /// The values given for `key`.
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// Checks each value of `key` against `valid`, with Docker's wording for a bad one.
    pub fn check_values(&self, key: &str, valid: &[&str]) -> Result<(), Verbatim> {
        match self.get(key).iter().find(|v| !valid.contains(&v.as_str())) {
            Some(bad) => Err(Verbatim(format!(
                "Error response from daemon: Invalid filter: '{key}'='{bad}'"
            ))),
            None => Ok(()),
        }
    }

    /// True when `key` was not given, or one of its values satisfies `matches`.
    pub fn any(&self, key: &str, matches: impl Fn(&str) -> bool) -> bool {
        let values = self.get(key);
        values.is_empty() || values.iter().any(|v| matches(v))
    }

    /// `id` or `name` filters as swarmkit applies them: a prefix of the value.
    pub fn prefix(&self, key: &str, value: &str) -> bool {
        self.any(key, |p| value.starts_with(p))
    }

    /// `label=KEY` (present) or `label=KEY=VALUE` (equal), every one given must match
    /// (as Docker's label filters do).
    pub fn labels<'a>(&self, key: &str, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.get(key).iter().all(|want| match want.split_once('=') {
            Some((k, v)) => labels(k) == Some(v),
            None => labels(want).is_some(),
        })
    }
}

/// What an object kind's listing is: its fields with their table headers, its default
/// table, and its rows.
pub struct Listing {
    /// Field names and the headers Docker prints for them (`("CurrentState", "CURRENT STATE")`).
    pub headers: &'static [(&'static str, &'static str)],
    /// The default table's template (`{{.ID}}\t{{.Name}}...`, without `table `).
    pub default_table: &'static str,
    /// The field `-q` prints (`ID`; a stack's `Name`).
    pub id_field: &'static str,
    /// One JSON object per row, with Docker's field names.
    pub rows: Vec<Value>,
}

/// What `--format` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A table: header row and aligned columns (the template's cells, tab-separated).
    Table(String),
    /// One line per row from a template.
    Lines(String),
}

/// The shape of the output: `-q` is `{{.ID}}`, `json` is `{{json .}}`, `table ...` a table
/// (as Docker's `formatter.Context` does: `\t` and `\n` written out are tabs and newlines).
pub fn shape(format: Option<&str>, quiet: bool, listing: &Listing) -> Shape {
    let format = format.unwrap_or("").trim();
    if quiet && (format.is_empty() || format == "table") {
        return Shape::Lines(format!("{{{{.{}}}}}", listing.id_field));
    }
    let default_table = listing.default_table;
    let unescape = |s: &str| s.trim().replace("\\t", "\t").replace("\\n", "\n");
    match format {
        "" | "table" => Shape::Table(default_table.to_string()),
        "json" => Shape::Lines("{{json .}}".into()),
        f => match f.strip_prefix("table") {
            Some(rest) if rest.starts_with(char::is_whitespace) => Shape::Table(unescape(rest)),
            _ => Shape::Lines(unescape(f)),
        },
    }
}

/// The text of a listing in `shape`.
pub fn render_rows(listing: &Listing, shape: &Shape) -> anyhow::Result<String> {
    let template_error = |e: crate::template::TemplateError| {
        anyhow::Error::new(Verbatim(format!("template parsing error: {e}")))
    };
    match shape {
        Shape::Lines(text) => {
            let t = Template::parse(text).map_err(template_error)?;
            let mut out = String::new();
            for row in &listing.rows {
                out.push_str(&t.execute(row, Mode::Strict).map_err(template_error)?);
                out.push('\n');
            }
            Ok(out)
        }
        Shape::Table(text) => {
            let t = Template::parse(text).map_err(template_error)?;
            let mut lines = Vec::new();
            for row in &listing.rows {
                lines.push(t.execute(row, Mode::Strict).map_err(template_error)?);
            }
            let header: serde_json::Map<String, Value> = listing
                .headers
                .iter()
                .map(|(k, h)| (k.to_string(), Value::String(h.to_string())))
                .collect();
            let header = t
                .execute(&Value::Object(header), Mode::Header)
                .map_err(template_error)?;
            let cells =
                |line: &str| -> Vec<String> { line.split('\t').map(str::to_string).collect() };
            let header_cells = cells(&header);
            let rows: Vec<Vec<String>> = lines.iter().map(|l| cells(l)).collect();
            let header_refs: Vec<&str> = header_cells.iter().map(String::as_str).collect();
            Ok(render_table(&header_refs, &rows))
        }
    }
}

/// Prints a listing as `args` ask.
pub fn print_rows(listing: &Listing, args: &ListArgs) -> anyhow::Result<()> {
    let shape = shape(args.format.as_deref(), args.quiet, listing);
    write_stdout(&render_rows(listing, &shape)?);
    Ok(())
}

/// `inspect`'s output: the JSON array of `views` (no `--format`, or `json`), or the
/// template executed on each view, one per line (a missing key prints `<no value>`, as
/// Docker's inspect does on its JSON).
pub fn render_inspect(views: &[Value], format: Option<&str>) -> anyhow::Result<String> {
    match format.map(str::trim) {
        None | Some("") | Some("json") => Ok(format!("{}\n", serde_json::to_string_pretty(views)?)),
        Some(f) => {
            let f = f.replace("\\t", "\t").replace("\\n", "\n");
            let error = |e: crate::template::TemplateError| {
                anyhow::Error::new(Verbatim(format!("template parsing error: {e}")))
            };
            let t = Template::parse(&f).map_err(error)?;
            let mut out = String::new();
            for v in views {
                out.push_str(&t.execute(v, Mode::Lenient).map_err(error)?);
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// Prints [`render_inspect`] of `views`.
pub fn print_inspect<T: serde::Serialize>(views: &[T], format: Option<&str>) -> anyhow::Result<()> {
    let values = views
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    write_stdout(&render_inspect(&values, format)?);
    Ok(())
}

/// An id as Docker's tables show it: its first 12 characters unless `--no-trunc`.
pub fn trunc_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

/// Docker's `formatter.Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filters(args: &[&str]) -> Result<Filters, Verbatim> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Filters::parse(&args, &["id", "name", "label"])
    }

    #[test]
    fn filters_parse_and_refuse_unknown_keys_as_docker() {
        let f = filters(&["name=web", "NAME=db", "label=a=b"]).unwrap();
        assert_eq!(f.get("name"), ["web", "db"]);
        assert_eq!(f.get("label"), ["a=b"]);
        assert_eq!(
            filters(&["foo=bar"]).unwrap_err().0,
            "Error response from daemon: Invalid filter 'foo'"
        );
        assert!(
            filters(&["name"])
                .unwrap_err()
                .0
                .contains("expected name=value")
        );
        assert_eq!(filters(&[]).unwrap(), Filters::default());
    }

    #[test]
    fn filter_matching() {
        let f = filters(&["name=we", "name=db", "id=ab"]).unwrap();
        assert!(f.prefix("name", "web") && f.prefix("name", "db1"));
        assert!(!f.prefix("name", "xweb"));
        assert!(f.prefix("id", "abc") && !f.prefix("id", "bac"));
        let none = filters(&[]).unwrap();
        assert!(none.prefix("name", "anything"));
        let labels = |k: &str| match k {
            "env" => Some("prod"),
            "team" => Some(""),
            _ => None,
        };
        for (given, want) in [
            (vec!["label=env"], true),
            (vec!["label=env=prod"], true),
            (vec!["label=env=dev"], false),
            (vec!["label=team"], true),
            (vec!["label=team="], true),
            (vec!["label=other"], false),
            (vec!["label=env", "label=other"], false),
        ] {
            assert_eq!(
                filters(&given).unwrap().labels("label", labels),
                want,
                "{given:?}"
            );
        }
        let modes = Filters::parse(&["mode=x".to_string()], &["mode"]).unwrap();
        assert_eq!(
            modes.check_values("mode", &["global"]).unwrap_err().0,
            "Error response from daemon: Invalid filter: 'mode'='x'"
        );
    }

    fn listing() -> Listing {
        Listing {
            headers: &[
                ("ID", "ID"),
                ("Name", "NAME"),
                ("CurrentState", "CURRENT STATE"),
            ],
            default_table: "{{.ID}}\t{{.Name}}\t{{.CurrentState}}",
            id_field: "ID",
            rows: vec![
                json!({"ID": "abc", "Name": "web", "CurrentState": "Running"}),
                json!({"ID": "defghi", "Name": "db", "CurrentState": ""}),
            ],
        }
    }

    fn render(format: Option<&str>, quiet: bool) -> String {
        let l = listing();
        render_rows(&l, &shape(format, quiet, &l)).unwrap()
    }

    #[test]
    fn shapes_of_output() {
        assert_eq!(
            render(None, false),
            "ID        NAME      CURRENT STATE\nabc       web       Running\ndefghi    db\n"
        );
        assert_eq!(render(Some("table"), false), render(None, false));
        assert_eq!(render(None, true), "abc\ndefghi\n");
        assert_eq!(render(Some("{{.Name}}"), false), "web\ndb\n");
        assert_eq!(
            render(Some("table {{.Name}}\\t{{.ID}}"), false),
            "NAME      ID\nweb       abc\ndb        defghi\n"
        );
        assert_eq!(
            render(Some("json"), false),
            "{\"CurrentState\":\"Running\",\"ID\":\"abc\",\"Name\":\"web\"}\n\
             {\"CurrentState\":\"\",\"ID\":\"defghi\",\"Name\":\"db\"}\n"
        );
        // A format wins over -q, as in Docker.
        assert_eq!(render(Some("{{.Name}}"), true), "web\ndb\n");
        let l = listing();
        let err = render_rows(&l, &shape(Some("{{.Nme}}"), false, &l)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "template parsing error: template: :1:2: executing \"\" at <.Nme>: can't evaluate field Nme"
        );
    }

    #[test]
    fn inspect_format() {
        let views = vec![json!({"ID": "x", "Spec": {"Name": "web"}})];
        assert_eq!(
            render_inspect(&views, Some("{{.Spec.Name}}")).unwrap(),
            "web\n"
        );
        assert_eq!(
            render_inspect(&views, Some("{{.Nope}}")).unwrap(),
            "<no value>\n"
        );
        assert!(render_inspect(&views, None).unwrap().starts_with("[\n"));
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
        assert_eq!(trunc_id("0123456789abcdef", false), "0123456789ab");
    }
}
