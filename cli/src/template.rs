//! Go's `text/template` as Docker's `--format` uses it, over JSON values: `{{.Name}}`,
//! `{{.Spec.Name}}`, pipelines (`{{.Name | upper}}`), `{{if}}`/`{{else}}`/`{{end}}`,
//! `{{range}}`, `{{with}}`, trim markers (`{{-`, `-}}`), string and number literals, and the
//! functions Docker adds (`json`, `split`, `join`, `title`, `lower`, `upper`, `pad`,
//! `truncate`) besides Go's own (`eq`, `ne`, `not`, `and`, `or`, `len`, `index`, `print`,
//! `println`, `printf`). Errors are worded as Go's: `template: :1:2: executing "" at <.Nme>:
//! can't evaluate field Nme`.
//!
//! Variables (`$x := ...`) and `define`/`template` are not supported and are refused at parse
//! time.

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

/// A template that could not be parsed or executed: Go's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
}

/// Commands joined by `|`; where the action starts (line, column) and its text, for errors.
#[derive(Debug, Clone)]
struct Pipe {
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    Field {
        path: Vec<String>,
        line: usize,
        col: usize,
    },
    Str(String),
    Num(f64),
    Bool(bool),
    Func(String),
    /// `(pipeline)`, or `(pipeline).Field.Path`: the field chain read from its value.
    Sub(Pipe, Option<Box<Arg>>),
}

const FUNCS: &[&str] = &[
    "json", "split", "join", "title", "lower", "upper", "pad", "truncate", "eq", "ne", "lt", "le",
    "gt", "ge", "not", "and", "or", "len", "index", "print", "println", "printf",
];

/// How a template is executed: on data (`Data`), or on a header row (`Header`: the
/// functions return their first argument, as Docker's `HeaderFunctions` do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A missing field is an error (the row models are Go structs in Docker).
    Strict,
    /// A missing field is `<no value>` (inspect's JSON is a map in Docker).
    Lenient,
    /// Rendering a table's header.
    Header,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let tokens = split_actions(text)?;
        let mut p = Parser { tokens, at: 0 };
        let (nodes, end) = p.nodes()?;
        if let Some(end) = end {
            return Err(perr(end.line, format!("unexpected {{{{{}}}}}", end.word)));
        }
        Ok(Template { nodes })
    }

    /// Executes the template on `data`.
    pub fn execute(&self, data: &Value, mode: Mode) -> Result<String, TemplateError> {
        let mut out = String::new();
        let ex = Exec { mode };
        ex.nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

fn perr(line: usize, msg: String) -> TemplateError {
    TemplateError(format!("template: :{line}: {msg}"))
}

/// A piece of the template's source: text, or the inside of `{{ }}` with its position.
#[derive(Debug)]
enum Piece {
    Text(String),
    Action {
        body: String,
        line: usize,
        col: usize,
    },
}

/// Splits text and actions, applying the trim markers.
fn split_actions(text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_left = after.starts_with("- ") || after.starts_with("-\t") || after == "-";
        if trim_left {
            before = before.trim_end();
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_string()));
        }
        let line = text[..offset + start].matches('\n').count() + 1;
        let Some(end) = find_close(after) else {
            return Err(perr(line, "unclosed action".into()));
        };
        let mut body = &after[..end];
        let body_start = offset + start + 2;
        let mut body_offset = body_start;
        if trim_left {
            body = &body[1..];
            body_offset += 1;
        }
        trim_next = body.ends_with(" -") || body.ends_with("\t-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let line_start = text[..body_offset].rfind('\n').map_or(0, |i| i + 1);
        pieces.push(Piece::Action {
            body: body.to_string(),
            line,
            col: body_offset - line_start,
        });
        offset = body_start + end + 2;
        rest = &text[offset..];
    }
    let mut tail = rest;
    if trim_next {
        tail = tail.trim_start();
    }
    if !tail.is_empty() {
        pieces.push(Piece::Text(tail.to_string()));
    }
    Ok(pieces)
}

/// The index of the `}}` closing an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

struct End {
    word: &'static str,
    line: usize,
}

struct Parser {
    tokens: Vec<Piece>,
    at: usize,
}

impl Parser {
    /// Nodes up to `{{end}}` or `{{else}}` (returned), or the end of the template.
    fn nodes(&mut self) -> Result<(Vec<Node>, Option<End>), TemplateError> {
        let mut nodes = Vec::new();
        while self.at < self.tokens.len() {
            let i = self.at;
            self.at += 1;
            let (body, line, col) = match &self.tokens[i] {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    continue;
                }
                Piece::Action { body, line, col } => (body.clone(), *line, *col),
            };
            let trimmed = body.trim();
            let lead = body.len() - body.trim_start().len();
            let (word, rest) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            let rest_col = col + lead + word.len() + (trimmed.len() - word.len() - rest.len());
            match word {
                "end" => return Ok((nodes, Some(End { word: "end", line }))),
                "else" => return Ok((nodes, Some(End { word: "else", line }))),
                "if" | "with" | "range" => {
                    if rest.trim().is_empty() {
                        return Err(perr(line, format!("missing value for {word}")));
                    }
                    let pipe = parse_pipe(rest, line, rest_col)?;
                    let (then, end) = self.nodes()?;
                    let (otherwise, end) = match end {
                        Some(End { word: "else", .. }) => self.nodes()?,
                        end => (Vec::new(), end),
                    };
                    if end.is_none() {
                        return Err(perr(line, format!("unexpected EOF in {word}")));
                    }
                    nodes.push(match word {
                        "if" => Node::If(pipe, then, otherwise),
                        "with" => Node::With(pipe, then, otherwise),
                        _ => Node::Range(pipe, then, otherwise),
                    });
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(perr(line, format!("{{{{{word}}}}} is not supported")));
                }
                _ if trimmed.starts_with("/*") => {}
                _ => nodes.push(Node::Action(parse_pipe(&body, line, col)?)),
            }
        }
        Ok((nodes, None))
    }
}

/// Parses a pipeline: commands separated by `|`, each a list of operands.
fn parse_pipe(s: &str, line: usize, col: usize) -> Result<Pipe, TemplateError> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    let (pipe, end) = pipe_at(s, &chars, &mut i, line, col, false)?;
    debug_assert!(end);
    Ok(pipe)
}

fn pipe_at(
    s: &str,
    chars: &[(usize, char)],
    i: &mut usize,
    line: usize,
    col: usize,
    nested: bool,
) -> Result<(Pipe, bool), TemplateError> {
    let mut cmds: Vec<Vec<Arg>> = vec![Vec::new()];
    while *i < chars.len() {
        let (pos, c) = chars[*i];
        match c {
            c if c.is_whitespace() => *i += 1,
            '|' => {
                if cmds.last().is_none_or(Vec::is_empty) {
                    return Err(perr(line, "missing command before |".into()));
                }
                cmds.push(Vec::new());
                *i += 1;
            }
            ')' if nested => {
                *i += 1;
                return finish(cmds, line).map(|p| (p, true));
            }
            ')' => return Err(perr(line, "unexpected right paren".into())),
            '(' => {
                *i += 1;
                let (sub, closed) = pipe_at(s, chars, i, line, col, true)?;
                if !closed {
                    return Err(perr(line, "unclosed left paren".into()));
                }
                // `(index .Networks 0).Aliases`: a field chain right after the paren.
                let mut field = None;
                if chars.get(*i).is_some_and(|(_, ch)| *ch == '.') {
                    let start = *i;
                    while *i < chars.len() {
                        let ch = chars[*i].1;
                        if ch.is_whitespace() || "|()\"`".contains(ch) {
                            break;
                        }
                        *i += 1;
                    }
                    let end = chars.get(*i).map_or(s.len(), |(p, _)| *p);
                    let word = &s[chars[start].0..end];
                    let arg = word_arg(word, line, col + chars[start].0)?;
                    if !matches!(arg, Arg::Field { .. }) {
                        return Err(perr(line, format!("unexpected {word} after )")));
                    }
                    field = Some(Box::new(arg));
                }
                push(&mut cmds, Arg::Sub(sub, field));
            }
            '"' | '`' => {
                let start = *i;
                *i += 1;
                while *i < chars.len() && chars[*i].1 != c {
                    if c == '"' && chars[*i].1 == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
                if *i >= chars.len() {
                    return Err(perr(line, "unterminated quoted string".into()));
                }
                *i += 1;
                let end = chars.get(*i).map_or(s.len(), |(p, _)| *p);
                let lit = &s[chars[start].0..end];
                let value = if c == '`' {
                    lit[1..lit.len() - 1].to_string()
                } else {
                    serde_json::from_str::<String>(lit)
                        .map_err(|_| perr(line, format!("bad string literal {lit}")))?
                };
                push(&mut cmds, Arg::Str(value));
            }
            '$' => return Err(perr(line, "variables ($) are not supported".into())),
            _ => {
                let start = *i;
                while *i < chars.len() {
                    let ch = chars[*i].1;
                    if ch.is_whitespace() || "|()\"`".contains(ch) {
                        break;
                    }
                    *i += 1;
                }
                let end = chars.get(*i).map_or(s.len(), |(p, _)| *p);
                let word = &s[pos..end];
                let _ = start;
                push(&mut cmds, word_arg(word, line, col + pos)?);
            }
        }
    }
    if nested {
        return Ok((finish(cmds, line)?, false));
    }
    finish(cmds, line).map(|p| (p, true))
}

fn push(cmds: &mut [Vec<Arg>], arg: Arg) {
    if let Some(last) = cmds.last_mut() {
        last.push(arg);
    }
}

fn finish(cmds: Vec<Vec<Arg>>, line: usize) -> Result<Pipe, TemplateError> {
    if cmds.iter().any(Vec::is_empty) {
        return Err(perr(line, "missing value for command".into()));
    }
    for (n, cmd) in cmds.iter().enumerate() {
        // After a `|` the command must be a function (the value is its last argument).
        if n > 0 && !matches!(cmd[0], Arg::Func(_)) {
            return Err(perr(
                line,
                "non executable command in pipeline stage 2".into(),
            ));
        }
    }
    Ok(Pipe { cmds })
}

fn word_arg(word: &str, line: usize, col: usize) -> Result<Arg, TemplateError> {
    if word == "." {
        return Ok(Arg::Dot);
    }
    if let Some(path) = word.strip_prefix('.') {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        {
            return Err(perr(line, format!("bad character in field {word:?}")));
        }
        return Ok(Arg::Field {
            path: parts,
            line,
            col,
        });
    }
    match word {
        "true" => return Ok(Arg::Bool(true)),
        "false" => return Ok(Arg::Bool(false)),
        "nil" => return Err(perr(line, "nil is not a command".into())),
        _ => {}
    }
    if word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
        return word
            .parse::<f64>()
            .map(Arg::Num)
            .map_err(|_| perr(line, format!("bad number syntax: {word:?}")));
    }
    if FUNCS.contains(&word) {
        return Ok(Arg::Func(word.to_string()));
    }
    Err(perr(line, format!("function {word:?} not defined")))
}

struct Exec {
    mode: Mode,
}

impl Exec {
    fn nodes(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(pipe) => out.push_str(&print(&self.pipe(pipe, dot)?)),
                Node::If(pipe, then, otherwise) => {
                    if truthy(&self.pipe(pipe, dot)?) {
                        self.nodes(then, dot, out)?;
                    } else {
                        self.nodes(otherwise, dot, out)?;
                    }
                }
                Node::With(pipe, then, otherwise) => {
                    let v = self.pipe(pipe, dot)?;
                    if truthy(&v) {
                        self.nodes(then, &v, out)?;
                    } else {
                        self.nodes(otherwise, dot, out)?;
                    }
                }
                Node::Range(pipe, body, otherwise) => {
                    let v = self.pipe(pipe, dot)?;
                    let items: Vec<Value> = match v {
                        Value::Array(a) => a,
                        Value::Object(o) => {
                            let mut kv: Vec<(String, Value)> = o.into_iter().collect();
                            kv.sort_by(|a, b| a.0.cmp(&b.0));
                            kv.into_iter().map(|(_, v)| v).collect()
                        }
                        Value::Null => Vec::new(),
                        Value::String(s) if self.mode == Mode::Header => vec![Value::String(s)],
                        other => {
                            return Err(TemplateError(format!(
                                "template: :1: range can't iterate over {}",
                                print(&other)
                            )));
                        }
                    };
                    if items.is_empty() {
                        self.nodes(otherwise, dot, out)?;
                    }
                    for item in &items {
                        self.nodes(body, item, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipe(&self, pipe: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.cmd(cmd, dot, value.take())?);
        }
        Ok(value.unwrap_or(Value::Null))
    }

    fn cmd(&self, cmd: &[Arg], dot: &Value, piped: Option<Value>) -> Result<Value, TemplateError> {
        match &cmd[0] {
            Arg::Func(name) => {
                let mut args = cmd[1..]
                    .iter()
                    .map(|a| self.arg(a, dot))
                    .collect::<Result<Vec<_>, _>>()?;
                args.extend(piped);
                self.call(name, args)
            }
            other if cmd.len() == 1 => self.arg(other, dot),
            _ => Err(TemplateError(
                "template: :1: can't give argument to non-function".into(),
            )),
        }
    }

    fn arg(&self, arg: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        Ok(match arg {
            Arg::Dot => dot.clone(),
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, |n| {
                if n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15)
                {
                    Value::from(n.as_f64().unwrap_or_default() as i64)
                } else {
                    Value::Number(n)
                }
            }),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Sub(p, None) => self.pipe(p, dot)?,
            Arg::Sub(p, Some(field)) => self.arg(field, &self.pipe(p, dot)?)?,
            Arg::Func(name) => self.call(name, Vec::new())?,
            Arg::Field { path, line, col } => {
                let mut v = dot;
                for (n, key) in path.iter().enumerate() {
                    match v {
                        Value::Object(o) => match o.get(key).or_else(|| loose_get(o, key)) {
                            Some(next) => v = next,
                            None if self.mode == Mode::Strict => {
                                return Err(exec_err(
                                    *line,
                                    *col,
                                    path,
                                    &format!("can't evaluate field {key}"),
                                ));
                            }
                            None => return Ok(Value::Null),
                        },
                        Value::Null if self.mode != Mode::Strict => return Ok(Value::Null),
                        // A header row has no nested values: `.Spec.Name` is `Spec`'s header.
                        _ if self.mode == Mode::Header => return Ok(v.clone()),
                        other => {
                            let _ = n;
                            return Err(exec_err(
                                *line,
                                *col,
                                path,
                                &format!("can't evaluate field {key} in type {}", go_type(other)),
                            ));
                        }
                    }
                }
                v.clone()
            }
        })
    }

    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
        let text_function = matches!(
            name,
            "json" | "split" | "join" | "title" | "lower" | "upper" | "pad" | "truncate"
        );
        if self.mode == Mode::Header && text_function {
            return Ok(args.into_iter().next().unwrap_or(Value::Null));
        }
        match name {
            _ if text_function => call_text(name, &args),
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                want(name, &args, 2)?;
                let ord = compare(&args[0], &args[1]);
                Ok(Value::Bool(match name {
                    "eq" => ord == Some(std::cmp::Ordering::Equal),
                    "ne" => ord != Some(std::cmp::Ordering::Equal),
                    "lt" => ord == Some(std::cmp::Ordering::Less),
                    "le" => ord.is_some_and(|o| o.is_le()),
                    "gt" => ord == Some(std::cmp::Ordering::Greater),
                    _ => ord.is_some_and(|o| o.is_ge()),
                }))
            }
            "not" => {
                want(name, &args, 1)?;
                Ok(Value::Bool(!truthy(&args[0])))
            }
            // Go's `and` and `or`: the first argument that decides, else the last.
            "and" | "or" => Ok(args
                .iter()
                .find(|a| truthy(a) == (name == "or"))
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Null)),
            "len" => {
                want(name, &args, 1)?;
                len(&args[0])
            }
            "index" => index(&args),
            "print" => Ok(Value::String(sprint(&args))),
            "println" => Ok(Value::String(format!(
                "{}\n",
                args.iter().map(print).collect::<Vec<_>>().join(" ")
            ))),
            "printf" => {
                let Some((f, rest)) = args.split_first() else {
                    return Err(TemplateError(
                        "template: :1: wrong number of args for printf: want at least 1 got 0"
                            .into(),
                    ));
                };
                Ok(Value::String(printf(&print(f), rest)))
            }
            _ => Err(TemplateError(format!(
                "template: :1: function {name:?} not defined"
            ))),
        }
    }
}

/// An error unless the function `name` got `n` arguments.
fn want(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(TemplateError(format!(
            "template: :1: wrong number of args for {name}: want {n} got {}",
            args.len()
        )))
    }
}

/// An integer argument of the function `name`.
fn int(name: &str, v: &Value) -> Result<i64, TemplateError> {
    v.as_i64().ok_or_else(|| {
        TemplateError(format!(
            "template: :1: error calling {name}: {} is not an integer",
            print(v)
        ))
    })
}

/// Docker's text functions: `json`, `split`, `join`, `title`, `lower`, `upper`, `pad`,
/// `truncate`.
fn call_text(name: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let text = |i: usize| print(&args[i]);
    Ok(match name {
        "json" => {
            want(name, args, 1)?;
            Value::String(serde_json::to_string(&args[0]).unwrap_or_default())
        }
        "split" => {
            want(name, args, 2)?;
            let (s, sep) = (text(0), text(1));
            if sep.is_empty() {
                Value::Array(s.chars().map(|c| Value::String(c.to_string())).collect())
            } else {
                Value::Array(
                    s.split(sep.as_str())
                        .map(|p| Value::String(p.into()))
                        .collect(),
                )
            }
        }
        "join" => {
            want(name, args, 2)?;
            let sep = text(1);
            match &args[0] {
                Value::Array(a) => {
                    Value::String(a.iter().map(print).collect::<Vec<_>>().join(&sep))
                }
                other => Value::String(print(other)),
            }
        }
        "title" => {
            want(name, args, 1)?;
            Value::String(title(&text(0)))
        }
        "lower" => {
            want(name, args, 1)?;
            Value::String(text(0).to_lowercase())
        }
        "upper" => {
            want(name, args, 1)?;
            Value::String(text(0).to_uppercase())
        }
        "pad" => {
            want(name, args, 3)?;
            let s = text(0);
            if s.is_empty() {
                Value::String(s)
            } else {
                let (pre, post) = (int(name, &args[1])?.max(0), int(name, &args[2])?.max(0));
                Value::String(format!(
                    "{}{s}{}",
                    " ".repeat(pre as usize),
                    " ".repeat(post as usize)
                ))
            }
        }
        "truncate" => {
            want(name, args, 2)?;
            let n = int(name, &args[1])?.max(0) as usize;
            Value::String(text(0).chars().take(n).collect())
        }
        _ => {
            return Err(TemplateError(format!(
                "template: :1: function {name:?} not defined"
            )));
        }
    })
}

/// Go's `len`: of a string (bytes), an array or a map.
fn len(v: &Value) -> Result<Value, TemplateError> {
    Ok(Value::from(match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        other => {
            return Err(TemplateError(format!(
                "template: :1: error calling len: len of type {}",
                go_type(other)
            )));
        }
    }))
}

/// Go's `index`: the first argument indexed by each of the others in turn.
fn index(args: &[Value]) -> Result<Value, TemplateError> {
    let mut v = args.first().cloned().unwrap_or(Value::Null);
    for key in &args[1.min(args.len())..] {
        v = match (&v, key) {
            (Value::Array(a), k) => a.get(int("index", k)? as usize).cloned().ok_or_else(|| {
                TemplateError(format!(
                    "template: :1: error calling index: index out of range: {}",
                    print(k)
                ))
            })?,
            (Value::Object(o), k) => o.get(&print(k)).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        };
    }
    Ok(v)
}

fn exec_err(line: usize, col: usize, path: &[String], msg: &str) -> TemplateError {
    TemplateError(format!(
        "template: :{line}:{col}: executing \"\" at <.{}>: {msg}",
        path.join(".")
    ))
}

/// Go's name of a value's type, for errors.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(std::cmp::Ordering::Equal),
        _ => (a == b).then_some(std::cmp::Ordering::Equal),
    }
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value as Go's `fmt` prints it with `%v`.
pub fn print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => {
                let f = n.as_f64().unwrap_or_default();
                if f.fract() == 0.0 && f.abs() < 1e21 {
                    format!("{f:.0}")
                } else {
                    f.to_string()
                }
            }
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut kv: Vec<(&String, &Value)> = o.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{k}:{}", print(v)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&print(a));
    }
    out
}

/// Go's `fmt.Sprintf` for the common verbs: `%s`, `%v`, `%d`, `%q`, `%%`.
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb) => match args.next() {
                Some(a) => match verb {
                    'q' => out.push_str(&serde_json::to_string(&print(a)).unwrap_or_default()),
                    _ => out.push_str(&print(a)),
                },
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

/// `key` looked up as Docker's Go field names read against mini's snake_case JSON: `Id` finds
/// `id`, `CreatedAt` finds `created_at` (case and underscores ignored). An exact key wins.
fn loose_get<'a>(o: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    let norm = |k: &str| -> String {
        k.chars()
            .filter(|c| *c != '_')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let want = norm(key);
    o.iter().find(|(k, _)| norm(k) == want).map(|(_, v)| v)
}

/// Go's `strings.Title`: the first letter of every word in upper case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, data: &Value) -> Result<String, TemplateError> {
        Template::parse(t)?.execute(data, Mode::Strict)
    }

    #[test]
    fn renders_like_go_templates() {
        let data = json!({
            "ID": "abc", "Name": "web", "Replicas": "2/3", "Self": true, "N": 3,
            "Labels": {"b": "2", "a": "1"}, "Names": ["x", "y"],
            "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 3}}},
        });
        let cases: &[(&str, &str)] = &[
            ("{{.Name}}", "web"),
            ("{{.ID}}\t{{.Name}}", "abc\tweb"),
            ("{{ .Name }}!", "web!"),
            ("{{.Spec.Name}}", "web"),
            ("{{.Spec.Mode.Replicated.Replicas}}", "3"),
            ("{{json .Names}}", r#"["x","y"]"#),
            ("{{json .Spec.Name}}", r#""web""#),
            ("{{.Name | upper}}", "WEB"),
            ("{{upper .Name}}", "WEB"),
            ("{{title \"hello world\"}}", "Hello World"),
            ("{{lower \"ABC\"}}", "abc"),
            ("{{join .Names \", \"}}", "x, y"),
            ("{{join (split \"a:b:c\" \":\") \"-\"}}", "a-b-c"),
            ("{{truncate .Name 2}}", "we"),
            ("{{truncate .Name 10}}", "web"),
            ("[{{pad .Name 1 2}}]", "[ web  ]"),
            ("{{if .Self}}*{{else}}-{{end}}", "*"),
            ("{{if not .Self}}*{{else}}-{{end}}", "-"),
            ("{{if eq .Name \"web\"}}yes{{end}}", "yes"),
            ("{{range .Names}}<{{.}}>{{end}}", "<x><y>"),
            ("{{range .Labels}}{{.}}{{end}}", "12"),
            ("{{with .Spec}}{{.Name}}{{end}}", "web"),
            ("{{.Labels}}", "map[a:1 b:2]"),
            ("{{.Names}}", "[x y]"),
            ("{{len .Names}}", "2"),
            ("{{index .Labels \"a\"}}", "1"),
            ("{{index .Names 1}}", "y"),
            ("{{printf \"%s=%d\" .Name .N}}", "web=3"),
            ("{{print .N .N}}", "3 3"),
            ("a  {{- .Name -}}  b", "awebb"),
            ("{{/* comment */}}x", "x"),
            ("{{`raw`}}", "raw"),
        ];
        for (t, want) in cases {
            assert_eq!(run(t, &data).as_deref(), Ok(*want), "template {t:?}");
        }
    }

    #[test]
    fn docker_field_names_find_snake_case_keys() {
        let data = json!({"id": "abc", "created_at_ms": 5, "spec": {"name": "web"}, "Id": "exact"});
        assert_eq!(run("{{.ID}}", &json!({"id": "abc"})).as_deref(), Ok("abc"));
        assert_eq!(run("{{.Id}}", &data).as_deref(), Ok("exact"));
        assert_eq!(run("{{.CreatedAtMs}}", &data).as_deref(), Ok("5"));
        assert_eq!(run("{{.Spec.Name}}", &data).as_deref(), Ok("web"));
        let nets = json!({"Networks": [{"Aliases": ["db", "db2"]}]});
        assert_eq!(
            run("{{json (index .Networks 0).Aliases}}", &nets).as_deref(),
            Ok(r#"["db","db2"]"#)
        );
        assert_eq!(
            run("{{(index .Networks 0).Aliases}}", &nets).as_deref(),
            Ok("[db db2]")
        );
        assert!(run("{{.Spec.Nme}}", &data).is_err());
    }

    #[test]
    fn errors_name_the_field_or_the_problem() {
        let data = json!({"Name": "web", "Spec": {"Name": "web"}});
        assert_eq!(
            run("{{.Nme}}", &data).unwrap_err().0,
            "template: :1:2: executing \"\" at <.Nme>: can't evaluate field Nme"
        );
        assert_eq!(
            run("x {{ .Spec.Nam }}", &data).unwrap_err().0,
            "template: :1:5: executing \"\" at <.Spec.Nam>: can't evaluate field Nam"
        );
        assert!(
            run("{{.Name.X}}", &data)
                .unwrap_err()
                .0
                .contains("can't evaluate field X in type string")
        );
        let parse = |t: &str| Template::parse(t).unwrap_err().0;
        assert_eq!(
            parse("{{foo .Name}}"),
            "template: :1: function \"foo\" not defined"
        );
        assert!(
            parse("{{.Name").contains("unclosed action"),
            "{}",
            parse("{{.Name")
        );
        assert!(parse("{{if .Name}}x").contains("unexpected EOF"));
        assert!(parse("{{end}}").contains("unexpected {{end}}"));
        assert!(parse("{{$x := .Name}}").contains("not supported"));
        assert!(parse("{{.Name | .ID}}").contains("non executable command"));
        // Inspect's JSON is a map: a missing key prints `<no value>`, as in Docker.
        let lenient = Template::parse("{{.Nme}}").unwrap();
        assert_eq!(lenient.execute(&data, Mode::Lenient).unwrap(), "<no value>");
    }

    #[test]
    fn header_mode_passes_names_through_functions() {
        let header = json!({"Name": "NAME", "ID": "ID", "Self": ""});
        let t = Template::parse("{{.ID}} {{if .Self}}*{{end}}\t{{upper .Name}}\t{{json .Name}}")
            .unwrap();
        assert_eq!(t.execute(&header, Mode::Header).unwrap(), "ID \tNAME\tNAME");
    }
}
