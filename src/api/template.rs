//! Renders MetricTemplate queries as Go's `text/template` does; pure.
//!
//! Flagger executes queries as Go templates with `missingkey=error`, no data (so `.` is nil), the
//! niladic functions `name`, `namespace`, `target`, `service`, `ingress`, `route`, `interval` and
//! `variables` (a map, used as `{{ variables.key }}`). This is a compact engine for the part of
//! Go's language a query can use: text and `{{-`/`-}}` trimming, comments, pipelines, `$variables`,
//! parenthesised calls, field chains on maps, `if`/`else if`/`else`, `range` (maps in key order,
//! integers) and `with`, and the builtins `and`, `or`, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`,
//! `len`, `index`, `print`, `printf`, `println` and `urlquery`, with `fmt`'s verbs (`%s %v %d %q
//! %f %e %g %x %X %o %b %c %t %U`, flags, width and precision). `define`, `template`, `block`,
//! `break`, `continue` and the other builtins are rejected by name. An unknown function or a
//! missing `variables` key is an error, never an empty string: an empty label matcher would
//! silently match nothing and look like "no data".
use std::collections::BTreeMap;

use super::Canary;
use super::canary::CanaryMetric;

/// The names a template may use besides `variables.<key>`.
pub const TEMPLATE_FUNCTIONS: [&str; 7] = [
    "name",
    "namespace",
    "target",
    "service",
    "ingress",
    "route",
    "interval",
];

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `{{` without a matching `}}`.
    #[error("unclosed action starting at byte {0}")]
    Unclosed(usize),
    /// A name the template model does not define.
    #[error(
        "unknown template variable {0:?}; expected one of name, namespace, target, service, ingress, route, interval, variables.<key>"
    )]
    UnknownVariable(String),
    /// `variables.<key>` with a key that `templateVariables` does not set.
    #[error("templateVariables has no key {0:?} (used as {{{{ variables.{0} }}}})")]
    MissingVariable(String),
    /// A part of Go's template language this engine does not implement (`define`, `template`,
    /// `block`, `break`, `continue`, builtins such as `html` or `slice`).
    #[error(
        "unsupported template action {0:?}: Serin implements the subset of Go templates that queries use"
    )]
    Unsupported(String),
    /// The template is not valid Go template syntax.
    #[error("template syntax: {0}")]
    Parse(String),
    /// Executing the template failed (a wrong argument type, an index out of range, …).
    #[error("template execution: {0}")]
    Exec(String),
}

/// The values a template sees: Flagger's `MetricTemplateModel`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// The Canary's name.
    pub name: String,
    /// The Canary's namespace.
    pub namespace: String,
    /// `spec.targetRef.name`.
    pub target: String,
    /// `spec.service.name`, else the target.
    pub service: String,
    /// `spec.ingressRef.name`, else the target.
    pub ingress: String,
    /// `spec.routeRef.name`, else the target.
    pub route: String,
    /// The metric's query window (default `1m`).
    pub interval: String,
    /// `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

impl Model {
    /// The model for one metric of a canary, as Flagger builds it.
    pub fn for_metric(canary: &Canary, metric: &CanaryMetric) -> Self {
        let spec = &canary.spec;
        let target = spec.target_name();
        let or_target = |n: Option<&String>| {
            n.filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| target.clone())
        };
        Self {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            service: or_target(spec.service.as_ref().and_then(|s| s.name.as_ref())),
            ingress: or_target(spec.ingress_ref.as_ref().map(|r| &r.name)),
            route: or_target(spec.route_ref.as_ref().map(|r| &r.name)),
            target,
            interval: metric.interval_or_default().to_string(),
            variables: metric.template_variables.clone().unwrap_or_default(),
        }
    }

    /// The value of one of Flagger's functions; `None` for other names.
    fn function(&self, name: &str) -> Option<Value> {
        let s = |v: &String| Some(Value::Str(v.clone()));
        match name {
            "name" => s(&self.name),
            "namespace" => s(&self.namespace),
            "target" => s(&self.target),
            "service" => s(&self.service),
            "ingress" => s(&self.ingress),
            "route" => s(&self.route),
            "interval" => s(&self.interval),
            "variables" => Some(Value::Map(self.variables.clone())),
            _ => None,
        }
    }
}

/// Go's builtin functions that this engine implements.
const BUILTINS: [&str; 14] = [
    "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "print", "printf",
    "println",
];
/// Go's other builtins: valid Go, but not implemented here.
const OTHER_BUILTINS: [&str; 6] = ["html", "js", "slice", "call", "urlquery", "break"];

/// A value during execution. Templates only see strings, the `variables` map, booleans and the
/// numbers they write themselves (or get from `len` and `index`).
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Map(BTreeMap<String, String>),
}

impl Value {
    /// Go's notion of truth: the zero value of a type is false.
    fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map[string]string",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `.name` (the name without the dot).
    Field(String),
    Dot,
    /// `$name`, or `$` alone (empty name).
    Var(String),
    Str(String),
    /// A number literal as written.
    Num(String),
    /// A character constant (Go's rune, an int).
    Char(char),
    Bool(bool),
    Nil,
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
}

/// One token and whether whitespace came before it (`.a.b` is a chain, `.a .b` two arguments).
type Token = (Tok, bool);

#[derive(Debug)]
enum Item {
    Text(String),
    /// An action's tokens and its byte offset; comments produce no item.
    Action(Vec<Token>, usize),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits a template into text and actions, applying the trim markers.
fn lex(src: &str) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    while pos <= src.len() {
        let rest = &src[pos..];
        let Some(open) = rest.find("{{") else {
            let text = if trim_next {
                rest.trim_start_matches(is_space)
            } else {
                rest
            };
            if !text.is_empty() {
                items.push(Item::Text(text.to_string()));
            }
            break;
        };
        let after = &rest[open + 2..];
        let trim_before = after.starts_with('-') && after[1..].starts_with(is_space);
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start_matches(is_space);
        }
        if trim_before {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let start = pos + open;
        let body_start = start + 2 + usize::from(trim_before) * 2;
        let (tokens, end, trim_after) = lex_action(src, body_start, start)?;
        if let Some(tokens) = tokens {
            items.push(Item::Action(tokens, start));
        }
        trim_next = trim_after;
        pos = end;
        if pos == src.len() {
            break;
        }
    }
    Ok(items)
}

/// Lexes one action from `at` to its `}}`: the tokens (`None` for a comment), the byte after the
/// action and whether it ends with a trim marker.
fn lex_action(
    src: &str,
    at: usize,
    start: usize,
) -> Result<(Option<Vec<Token>>, usize, bool), Error> {
    let bytes = src.as_bytes();
    let unclosed = || Error::Unclosed(start);
    let close_at = |i: usize| -> Option<(usize, bool)> {
        // ` -}}` or `}}`
        if src[i..].starts_with("}}") {
            return Some((i + 2, false));
        }
        if i > at
            && src[i..].starts_with("-}}")
            && bytes
                .get(i.wrapping_sub(1))
                .is_some_and(|b| is_space(*b as char))
        {
            return Some((i + 3, true));
        }
        None
    };
    // Comments: `/*` right after the delimiter (and its trim marker's space).
    let lead = src[at..].len() - src[at..].trim_start_matches(is_space).len();
    if src[at + lead..].starts_with("/*") {
        let body = at + lead + 2;
        let end = src[body..]
            .find("*/")
            .ok_or(Error::Parse("unclosed comment".into()))?
            + body
            + 2;
        let tail = &src[end..];
        let ws = tail.len() - tail.trim_start_matches(is_space).len();
        return match close_at(end + ws) {
            Some((next, trim)) if ws == 0 || trim => Ok((None, next, trim)),
            Some((next, trim)) if ws > 0 && !trim && lead > 0 => Ok((None, next, trim)),
            _ => Err(Error::Parse("comment ends before closing delimiter".into())),
        };
    }
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = at;
    let mut spaced = true;
    loop {
        let Some(c) = src[i..].chars().next() else {
            return Err(unclosed());
        };
        if let Some((next, trim)) = close_at(i) {
            return Ok((Some(tokens), next, trim));
        }
        if is_space(c) {
            spaced = true;
            i += c.len_utf8();
            continue;
        }
        let (tok, len) = match c {
            '|' => (Tok::Pipe, 1),
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '=' => (Tok::Assign, 1),
            ':' if src[i..].starts_with(":=") => (Tok::Declare, 2),
            '"' => {
                let (s, len) = quoted(&src[i..]).ok_or_else(unclosed)?;
                (Tok::Str(s), len)
            }
            '`' => {
                let end = src[i + 1..]
                    .find('`')
                    .ok_or(Error::Parse("unterminated raw quoted string".into()))?;
                (Tok::Str(src[i + 1..i + 1 + end].to_string()), end + 2)
            }
            '\'' => {
                let (s, len) = quoted_with(&src[i..], '\'')
                    .ok_or(Error::Parse("unterminated character constant".into()))?;
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(ch), None) => (Tok::Char(ch), len),
                    _ => {
                        return Err(Error::Parse(format!(
                            "malformed character constant {}",
                            &src[i..i + len]
                        )));
                    }
                }
            }
            '$' => {
                let n = ident_len(&src[i + 1..]);
                (Tok::Var(src[i + 1..i + 1 + n].to_string()), n + 1)
            }
            '.' => {
                let n = ident_len(&src[i + 1..]);
                if n == 0 {
                    if src[i + 1..].starts_with(|c: char| c.is_ascii_digit()) {
                        let n = number_len(&src[i..]);
                        (Tok::Num(src[i..i + n].to_string()), n)
                    } else {
                        (Tok::Dot, 1)
                    }
                } else {
                    (Tok::Field(src[i + 1..i + 1 + n].to_string()), n + 1)
                }
            }
            '-' | '+' | '0'..='9' => {
                let n = number_len(&src[i..]);
                if n == 0 || (n == 1 && !c.is_ascii_digit()) {
                    return Err(Error::Parse(format!("bad character {c:?} in action")));
                }
                (Tok::Num(src[i..i + n].to_string()), n)
            }
            c if c.is_alphabetic() || c == '_' => {
                let n = ident_len(&src[i..]);
                let word = &src[i..i + n];
                let tok = match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    _ => Tok::Ident(word.to_string()),
                };
                (tok, n)
            }
            c => return Err(Error::Parse(format!("unexpected {c:?} in action"))),
        };
        tokens.push((tok, spaced));
        spaced = false;
        i += len;
    }
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

fn number_len(s: &str) -> usize {
    let mut n = 0;
    let b = s.as_bytes();
    if matches!(b.first(), Some(b'+' | b'-')) {
        n = 1;
    }
    let mut prev = 0u8;
    while let Some(&c) = b.get(n) {
        let ok = c.is_ascii_alphanumeric()
            || c == b'.'
            || c == b'_'
            || ((c == b'+' || c == b'-') && matches!(prev, b'e' | b'E' | b'p' | b'P'));
        if !ok {
            break;
        }
        prev = c;
        n += 1;
    }
    n
}

fn quoted(s: &str) -> Option<(String, usize)> {
    quoted_with(s, '"')
}

/// Reads a Go interpreted string (or rune) literal starting with `q`: its value and length.
fn quoted_with(s: &str, q: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == q => return Some((out, i + 1)),
            '\n' => return None,
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

#[derive(Clone, Debug, Default)]
struct Pipeline {
    /// `$x :=` / `$i, $v :=` (declare) or `$x =` (assign).
    vars: Vec<String>,
    declare: bool,
    cmds: Vec<Vec<Operand>>,
}

#[derive(Clone, Debug)]
enum Operand {
    Func(String),
    Dot,
    Var(String),
    Lit(Value),
    Sub(Pipeline),
    /// An operand followed by `.field.field`.
    Chain(Box<Operand>, Vec<String>),
}

struct Parser {
    items: std::vec::IntoIter<Item>,
}

/// How a list of nodes ended.
enum Closer {
    Eof,
    End,
    /// `{{ else }}`, or `{{ else if … }}` / `{{ else with … }}` with the keyword and its tokens.
    Else(Option<(String, Vec<Token>)>),
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Closer), Error> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (tokens, _at) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(t, at) => (t, at),
            };
            let keyword = match tokens.first() {
                Some((Tok::Ident(k), _)) => k.as_str(),
                None => return Err(Error::Parse("missing value for command".into())),
                _ => "",
            };
            match keyword {
                "end" if tokens.len() == 1 => return Ok((nodes, Closer::End)),
                "else" => {
                    let rest = tokens[1..].to_vec();
                    return Ok((
                        nodes,
                        match rest.first() {
                            None => Closer::Else(None),
                            Some((Tok::Ident(k), _)) if k == "if" || k == "with" => {
                                Closer::Else(Some((k.clone(), rest[1..].to_vec())))
                            }
                            _ => return Err(Error::Parse("unexpected tokens after else".into())),
                        },
                    ));
                }
                "if" | "with" | "range" => {
                    let node = self.control(keyword, &tokens[1..])?;
                    nodes.push(node);
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(Error::Unsupported(keyword.to_string()));
                }
                "end" => return Err(Error::Parse("unexpected tokens after end".into())),
                _ => nodes.push(Node::Action(pipeline(&tokens)?)),
            }
        }
        Ok((nodes, Closer::Eof))
    }

    /// Parses `if`/`with`/`range` after its keyword, through its `end`.
    fn control(&mut self, keyword: &str, tokens: &[Token]) -> Result<Node, Error> {
        if tokens.is_empty() {
            return Err(Error::Parse(format!("missing value for {keyword}")));
        }
        let pipe = pipeline(tokens)?;
        let (body, end) = self.list()?;
        let otherwise = match end {
            Closer::Eof => return Err(Error::Parse(format!("unexpected EOF in {keyword}"))),
            Closer::End => Vec::new(),
            Closer::Else(None) => match self.list()? {
                (nodes, Closer::End) => nodes,
                _ => {
                    return Err(Error::Parse(format!(
                        "expected end after else in {keyword}"
                    )));
                }
            },
            // `else if` shares the outer `end`: the nested node consumes it.
            Closer::Else(Some((k, rest))) => vec![self.control(&k, &rest)?],
        };
        Ok(match keyword {
            "if" => Node::If(pipe, body, otherwise),
            "with" => Node::With(pipe, body, otherwise),
            _ => Node::Range(pipe, body, otherwise),
        })
    }
}

fn known_function(name: &str) -> Result<(), Error> {
    if BUILTINS.contains(&name) || name == "variables" || TEMPLATE_FUNCTIONS.contains(&name) {
        Ok(())
    } else if OTHER_BUILTINS.contains(&name) {
        Err(Error::Unsupported(name.to_string()))
    } else {
        Err(Error::UnknownVariable(name.to_string()))
    }
}

/// Parses a whole pipeline (with its declaration, if any).
fn pipeline(tokens: &[Token]) -> Result<Pipeline, Error> {
    let mut p = Pipeline::default();
    let mut rest = tokens;
    // Declarations: `$x :=`, `$x =`, `$i, $v :=`.
    let decl_end = rest
        .iter()
        .position(|(t, _)| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(d) = decl_end {
        let names: Vec<&Tok> = rest[..d].iter().map(|(t, _)| t).collect();
        let vars: Option<Vec<String>> = match names.as_slice() {
            [Tok::Var(a)] => Some(vec![a.clone()]),
            [Tok::Var(a), Tok::Comma, Tok::Var(b)] => Some(vec![a.clone(), b.clone()]),
            _ => None,
        };
        if let Some(vars) = vars {
            p.vars = vars;
            p.declare = matches!(rest[d].0, Tok::Declare);
            rest = &rest[d + 1..];
        }
    }
    let mut i = 0;
    let mut cmd = Vec::new();
    while i < rest.len() {
        if rest[i].0 == Tok::Pipe {
            if cmd.is_empty() {
                return Err(Error::Parse("missing command before |".into()));
            }
            p.cmds.push(std::mem::take(&mut cmd));
            i += 1;
            continue;
        }
        let (op, used) = operand(&rest[i..])?;
        cmd.push(op);
        i += used;
    }
    if cmd.is_empty() {
        return Err(Error::Parse("missing value for command".into()));
    }
    p.cmds.push(cmd);
    Ok(p)
}

/// Parses one operand with its field chain; returns it and the tokens used.
fn operand(tokens: &[Token]) -> Result<(Operand, usize), Error> {
    let (first, mut used) = match &tokens[0].0 {
        Tok::Ident(name) => {
            known_function(name)?;
            (Operand::Func(name.clone()), 1)
        }
        Tok::Dot => (Operand::Dot, 1),
        Tok::Field(f) => (Operand::Chain(Box::new(Operand::Dot), vec![f.clone()]), 1),
        Tok::Var(v) => (Operand::Var(v.clone()), 1),
        Tok::Str(s) => (Operand::Lit(Value::Str(s.clone())), 1),
        Tok::Char(c) => (Operand::Lit(Value::Int(i64::from(u32::from(*c)))), 1),
        Tok::Bool(b) => (Operand::Lit(Value::Bool(*b)), 1),
        Tok::Nil => (Operand::Lit(Value::Nil), 1),
        Tok::Num(n) => (Operand::Lit(number(n)?), 1),
        Tok::Open => {
            let mut depth = 0;
            let close = tokens
                .iter()
                .position(|(t, _)| {
                    match t {
                        Tok::Open => depth += 1,
                        Tok::Close => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .ok_or(Error::Parse("unclosed left paren".into()))?;
            (Operand::Sub(pipeline(&tokens[1..close])?), close + 1)
        }
        t => return Err(Error::Parse(format!("unexpected {t:?} in operand"))),
    };
    let mut fields = Vec::new();
    while let Some((Tok::Field(f), false)) = tokens.get(used) {
        fields.push(f.clone());
        used += 1;
    }
    let op = match (first, fields.is_empty()) {
        (op, true) => op,
        (Operand::Chain(base, mut head), false) => {
            head.extend(fields);
            Operand::Chain(base, head)
        }
        (op, false) => Operand::Chain(Box::new(op), fields),
    };
    Ok((op, used))
}

/// A number literal: a float when it has a fraction or exponent, else an int (Go's rules).
fn number(text: &str) -> Result<Value, Error> {
    let bad = || Error::Parse(format!("bad number syntax: {text:?}"));
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let lower = digits.to_ascii_lowercase();
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
        .iter()
        .find(|(p, _)| lower.starts_with(p));
    if let Some((prefix, radix)) = radix {
        let v = i64::from_str_radix(&lower[prefix.len()..], *radix).map_err(|_| bad())?;
        return Ok(Value::Int(if neg { -v } else { v }));
    }
    if lower.contains(['.', 'e']) {
        let v: f64 = lower.parse().map_err(|_| bad())?;
        return Ok(Value::Float(if neg { -v } else { v }));
    }
    let v = if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).map_err(|_| bad())?
    } else {
        lower.parse::<i64>().map_err(|_| bad())?
    };
    Ok(Value::Int(if neg { -v } else { v }))
}

fn parse(src: &str) -> Result<Vec<Node>, Error> {
    let mut p = Parser {
        items: lex(src)?.into_iter(),
    };
    match p.list()? {
        (nodes, Closer::Eof) => Ok(nodes),
        (_, Closer::End) => Err(Error::Parse("unexpected {{end}}".into())),
        (_, Closer::Else(_)) => Err(Error::Parse("unexpected {{else}}".into())),
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

struct Exec<'a> {
    model: &'a Model,
    /// Validation renders without `templateVariables`: every key is then a placeholder.
    any_variable: bool,
    vars: Vec<(String, Value)>,
    out: String,
}

impl Exec<'_> {
    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<(), Error> {
        for node in nodes {
            let scope = self.vars.len();
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.vars.is_empty() {
                        let text = fmt_value(&v);
                        self.out
                            .push_str(if v == Value::Nil { "<no value>" } else { &text });
                    }
                    continue; // declarations stay in scope until the enclosing block ends
                }
                Node::If(p, then, otherwise) => {
                    let v = self.pipeline(p, dot)?;
                    self.walk(if v.truth() { then } else { otherwise }, dot)?;
                }
                Node::With(p, then, otherwise) => {
                    let v = self.pipeline(p, dot)?;
                    if v.truth() {
                        self.walk(then, &v)?;
                    } else {
                        self.walk(otherwise, dot)?;
                    }
                }
                Node::Range(p, body, otherwise) => {
                    let v = self.pipeline(
                        &Pipeline {
                            vars: vec![],
                            ..p.clone()
                        },
                        dot,
                    )?;
                    let pairs: Vec<(Value, Value)> = match &v {
                        Value::Map(m) => m
                            .iter()
                            .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                            .collect(),
                        Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(Error::Exec(format!(
                                "range can't iterate over {}",
                                fmt_value(other)
                            )));
                        }
                    };
                    if pairs.is_empty() {
                        self.walk(otherwise, dot)?;
                    }
                    for (k, elem) in pairs {
                        let inner = self.vars.len();
                        match p.vars.as_slice() {
                            [one] => self.vars.push((one.clone(), elem.clone())),
                            [a, b] => {
                                self.vars.push((a.clone(), k));
                                self.vars.push((b.clone(), elem.clone()));
                            }
                            _ => {}
                        }
                        self.walk(body, &elem)?;
                        self.vars.truncate(inner);
                    }
                }
            }
            self.vars.truncate(scope);
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, Error> {
        let mut value = None;
        for cmd in &p.cmds {
            value = Some(self.command(cmd, dot, value)?);
        }
        let v = value.unwrap_or(Value::Nil);
        if let Some(name) = p.vars.first() {
            if p.declare {
                self.vars.push((name.clone(), v.clone()));
            } else {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| Error::Exec(format!("undefined variable ${name}")))?;
                slot.1 = v.clone();
            }
        }
        Ok(v)
    }

    fn command(
        &mut self,
        cmd: &[Operand],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, Error> {
        let (first, args) = cmd
            .split_first()
            .ok_or(Error::Parse("empty command".into()))?;
        if let Operand::Func(name) = first {
            return self.call(name, args, dot, piped);
        }
        if !args.is_empty() || piped.is_some() {
            return Err(Error::Exec(format!(
                "can't give argument to non-function {first:?}"
            )));
        }
        self.operand(first, dot)
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, Error> {
        match op {
            Operand::Func(name) => self.call(name, &[], dot, None),
            Operand::Dot => Ok(dot.clone()),
            Operand::Lit(v) => Ok(v.clone()),
            Operand::Var(name) if name.is_empty() => Ok(Value::Nil),
            Operand::Var(name) => self
                .vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| Error::Parse(format!("undefined variable \"${name}\""))),
            Operand::Sub(p) => self.pipeline(p, dot),
            Operand::Chain(base, fields) => {
                let from_variables = matches!(base.as_ref(), Operand::Func(f) if f == "variables");
                let mut v = self.operand(base, dot)?;
                for f in fields {
                    v = match v {
                        Value::Map(m) => match m.get(f) {
                            Some(s) => Value::Str(s.clone()),
                            None if self.any_variable => Value::Str(format!("<{f}>")),
                            None if from_variables => {
                                return Err(Error::MissingVariable(f.clone()));
                            }
                            None => {
                                return Err(Error::Exec(format!("map has no entry for key {f:?}")));
                            }
                        },
                        Value::Nil if matches!(base.as_ref(), Operand::Dot) => {
                            return Err(Error::UnknownVariable(format!(".{}", fields.join("."))));
                        }
                        other => {
                            return Err(Error::Exec(format!(
                                "can't evaluate field {f} in type {}",
                                other.type_name()
                            )));
                        }
                    };
                }
                Ok(v)
            }
        }
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Operand],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, Error> {
        // `and` and `or` stop at the first argument that decides (Go 1.18).
        if name == "and" || name == "or" {
            let n = args.len() + usize::from(piped.is_some());
            if n == 0 {
                return Err(Error::Exec(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                )));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.operand(a, dot)?;
                if last.truth() == (name == "or") {
                    return Ok(last);
                }
            }
            return Ok(piped.unwrap_or(last));
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.operand(a, dot)?);
        }
        vals.extend(piped);
        if let Some(v) = self.model.function(name) {
            if !vals.is_empty() {
                return Err(Error::Exec(format!(
                    "wrong number of args for {name}: want 0 got {}",
                    vals.len()
                )));
            }
            return Ok(v);
        }
        builtin(name, &vals)
    }
}

fn arity(name: &str, vals: &[Value], want: usize) -> Result<(), Error> {
    if vals.len() == want {
        Ok(())
    } else {
        Err(Error::Exec(format!(
            "wrong number of args for {name}: want {want} got {}",
            vals.len()
        )))
    }
}

fn builtin(name: &str, vals: &[Value]) -> Result<Value, Error> {
    match name {
        "not" => {
            arity(name, vals, 1)?;
            Ok(Value::Bool(!vals[0].truth()))
        }
        "len" => {
            arity(name, vals, 1)?;
            match &vals[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::Map(m) => Ok(Value::Int(m.len() as i64)),
                v => Err(Error::Exec(format!(
                    "error calling len: len of type {}",
                    v.type_name()
                ))),
            }
        }
        "index" => {
            let (item, keys) = vals.split_first().ok_or(Error::Exec(
                "wrong number of args for index: want at least 1 got 0".into(),
            ))?;
            let mut v = item.clone();
            for k in keys {
                v = match (&v, k) {
                    (Value::Map(m), Value::Str(k)) => {
                        Value::Str(m.get(k).cloned().unwrap_or_default())
                    }
                    (Value::Str(s), Value::Int(i)) => {
                        let b = usize::try_from(*i)
                            .ok()
                            .and_then(|i| s.as_bytes().get(i))
                            .ok_or_else(|| {
                                Error::Exec(format!("error calling index: index out of range: {i}"))
                            })?;
                        Value::Int(i64::from(*b))
                    }
                    (Value::Nil, _) => {
                        return Err(Error::Exec(
                            "error calling index: index of untyped nil".into(),
                        ));
                    }
                    (v, k) => {
                        return Err(Error::Exec(format!(
                            "error calling index: cannot index {} with {}",
                            v.type_name(),
                            k.type_name()
                        )));
                    }
                };
            }
            Ok(v)
        }
        "eq" => {
            let (a, rest) = vals
                .split_first()
                .ok_or(Error::Exec("missing argument for comparison".into()))?;
            if rest.is_empty() {
                return Err(Error::Exec("missing argument for comparison".into()));
            }
            for b in rest {
                if compare(a, b)? == std::cmp::Ordering::Equal {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, vals, 2)?;
            if name != "ne" && matches!(vals[0], Value::Bool(_)) {
                return Err(Error::Exec(format!(
                    "error calling {name}: invalid type for comparison"
                )));
            }
            let o = compare(&vals[0], &vals[1])?;
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match name {
                "ne" => o != Equal,
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            }))
        }
        "print" => Ok(Value::Str(sprint(vals))),
        "println" => {
            let mut s = vals.iter().map(fmt_value).collect::<Vec<_>>().join(" ");
            s.push('\n');
            Ok(Value::Str(s))
        }
        "printf" => {
            let (f, rest) = vals.split_first().ok_or(Error::Exec(
                "wrong number of args for printf: want at least 1 got 0".into(),
            ))?;
            let Value::Str(f) = f else {
                return Err(Error::Exec(format!(
                    "wrong type for value; expected string; got {}",
                    f.type_name()
                )));
            };
            Ok(Value::Str(sprintf(f, rest)))
        }
        other => Err(Error::UnknownVariable(other.to_string())),
    }
}

/// Go's basic comparison: same kind only (ints and floats do not mix).
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, Error> {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(Ordering::Less)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Nil, Value::Nil) => Ok(Ordering::Equal),
        _ => Err(Error::Exec(format!(
            "incompatible types for comparison: {} and {}",
            a.type_name(),
            b.type_name()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Go's fmt

/// `%v` of a value.
fn fmt_value(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => fmt_float(*f, 'g', None),
        Value::Str(s) => s.clone(),
        Value::Map(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
fn sprint(vals: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in vals.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && !is_str(v) && !is_str(&vals[i - 1]) {
            out.push(' ');
        }
        out.push_str(&fmt_value(v));
    }
    out
}

/// `strconv.FormatFloat(f, verb, prec, 64)` for `e`, `f` and `g` (`prec` None is the shortest).
fn fmt_float(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let exp_form = |mantissa: &str, exp: i32| {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    };
    // Digits and decimal exponent of the value, shortest or rounded to `digits` significant ones.
    let sci = |digits: Option<usize>| -> (String, i32) {
        let s = match digits {
            Some(d) => format!("{:.*e}", d.saturating_sub(1), f.abs()),
            None => format!("{:e}", f.abs()),
        };
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        (m.replace('.', ""), e.parse().unwrap_or(0))
    };
    let sign = if f.is_sign_negative() { "-" } else { "" };
    match verb {
        'f' => format!("{sign}{:.*}", prec.unwrap_or(6), f.abs()),
        'e' => {
            let p = prec.unwrap_or(6);
            let (d, e) = sci(Some(p + 1));
            let m = if d.len() > 1 {
                format!("{}.{}", &d[..1], &d[1..])
            } else {
                d
            };
            format!("{sign}{}", exp_form(&m, e))
        }
        _ => {
            let digits = prec.map(|p| p.max(1));
            let (mut d, e) = sci(digits);
            if digits.is_some() {
                d = d.trim_end_matches('0').to_string();
                if d.is_empty() {
                    d.push('0');
                }
            }
            let eprec = match digits {
                None => 6,
                Some(p) if p > d.len() && d.len() as i32 > e => d.len() as i32,
                Some(p) => p as i32,
            };
            if e < -4 || e >= eprec {
                let m = if d.len() > 1 {
                    format!("{}.{}", &d[..1], &d[1..])
                } else {
                    d
                };
                format!("{sign}{}", exp_form(&m, e))
            } else if e < 0 {
                format!("{sign}0.{}{d}", "0".repeat((-e - 1) as usize))
            } else {
                let int_len = (e + 1) as usize;
                if d.len() <= int_len {
                    format!("{sign}{d}{}", "0".repeat(int_len - d.len()))
                } else {
                    format!("{sign}{}.{}", &d[..int_len], &d[int_len..])
                }
            }
        }
    }
}

/// `strconv.Quote`.
fn go_quote(s: &str, ascii_only: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_ascii() || (!ascii_only && !c.is_control()) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf` for the values a template can hold.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        out.push_str(&format_one(verb, &spec, arg));
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| match a {
                Value::Nil => "<nil>".to_string(),
                a => format!("{}={}", a.type_name(), fmt_value(a)),
            })
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn bad_verb(verb: char, arg: &Value) -> String {
    match arg {
        Value::Nil => format!("%!{verb}(<nil>)"),
        a => format!("%!{verb}({}={})", a.type_name(), fmt_value(a)),
    }
}

fn format_one(verb: char, spec: &Spec, arg: &Value) -> String {
    let signed = |body: String, negative: bool| -> (String, String) {
        let sign = if negative {
            "-"
        } else if spec.plus {
            "+"
        } else if spec.space {
            " "
        } else {
            ""
        };
        (sign.to_string(), body)
    };
    let (sign, body, numeric) = match (verb, arg) {
        ('v', Value::Float(f)) | ('g', Value::Float(f)) | ('G', Value::Float(f)) => {
            let s = fmt_float(f.abs(), 'g', if verb == 'v' { None } else { spec.prec });
            let s = if verb == 'G' { s.to_uppercase() } else { s };
            let (a, b) = signed(s, f.is_sign_negative());
            (a, b, true)
        }
        ('e' | 'E' | 'f' | 'F', Value::Float(f)) => {
            let v = if verb == 'F' {
                'f'
            } else {
                verb.to_ascii_lowercase()
            };
            let s = fmt_float(f.abs(), v, spec.prec);
            let s = if verb == 'E' { s.to_uppercase() } else { s };
            let (a, b) = signed(s, f.is_sign_negative());
            (a, b, true)
        }
        ('v' | 'd', Value::Int(i)) => {
            let (a, b) = signed(i.unsigned_abs().to_string(), *i < 0);
            (a, b, true)
        }
        ('x' | 'X' | 'o' | 'O' | 'b', Value::Int(i)) => {
            let n = i.unsigned_abs();
            let mut s = match verb {
                'x' => format!("{n:x}"),
                'X' => format!("{n:X}"),
                'b' => format!("{n:b}"),
                _ => format!("{n:o}"),
            };
            if spec.sharp || verb == 'O' {
                s = match verb {
                    'x' => format!("0x{s}"),
                    'X' => format!("0X{s}"),
                    'O' => format!("0o{s}"),
                    'o' => format!("0{s}"),
                    _ => s,
                };
            }
            let (a, b) = signed(s, *i < 0);
            (a, b, true)
        }
        ('c', Value::Int(i)) => (
            String::new(),
            char::from_u32(*i as u32).unwrap_or('\u{fffd}').to_string(),
            false,
        ),
        ('q', Value::Int(i)) => {
            let c = char::from_u32(*i as u32).unwrap_or('\u{fffd}');
            let q = go_quote(&c.to_string(), spec.plus);
            let inner = q[1..q.len() - 1].replace("\\\"", "\"").replace('\'', "\\'");
            (String::new(), format!("'{inner}'"), false)
        }
        ('U', Value::Int(i)) => (String::new(), format!("U+{:04X}", i), false),
        ('s' | 'v', Value::Str(s)) => {
            let s = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            (String::new(), s, false)
        }
        ('q', Value::Str(s)) => {
            let q = if spec.sharp
                && !s.contains('`')
                && !s.chars().any(|c| c.is_control() && c != '\t')
            {
                format!("`{s}`")
            } else {
                go_quote(s, spec.plus)
            };
            (String::new(), q, false)
        }
        ('x' | 'X', Value::Str(s)) => {
            let hex: String = s
                .bytes()
                .map(|b| {
                    if verb == 'x' {
                        format!("{b:02x}")
                    } else {
                        format!("{b:02X}")
                    }
                })
                .collect();
            (String::new(), hex, false)
        }
        ('t' | 'v', Value::Bool(b)) => (String::new(), b.to_string(), false),
        ('v', Value::Map(_)) | ('s', Value::Map(_)) => (String::new(), fmt_value(arg), false),
        ('v', Value::Nil) => (String::new(), "<nil>".into(), false),
        (
            _,
            Value::Float(_)
            | Value::Int(_)
            | Value::Str(_)
            | Value::Bool(_)
            | Value::Nil
            | Value::Map(_),
        ) => {
            return bad_verb(verb, arg);
        }
    };
    let len = sign.chars().count() + body.chars().count();
    let pad = spec.width.unwrap_or(0).saturating_sub(len);
    if pad == 0 {
        format!("{sign}{body}")
    } else if spec.minus {
        format!("{sign}{body}{}", " ".repeat(pad))
    } else if spec.zero && numeric {
        format!("{sign}{}{body}", "0".repeat(pad))
    } else {
        format!("{}{sign}{body}", " ".repeat(pad))
    }
}

/// Renders `template` with `model`, as Go's `text/template` with `missingkey=error` and nil data.
pub fn render(template: &str, model: &Model) -> Result<String, Error> {
    execute(template, model, false)
}

fn execute(template: &str, model: &Model, any_variable: bool) -> Result<String, Error> {
    let nodes = parse(template)?;
    let mut exec = Exec {
        model,
        any_variable,
        vars: vec![(String::new(), Value::Nil)],
        out: String::with_capacity(template.len()),
    };
    exec.walk(&nodes, &Value::Nil)?;
    Ok(exec.out)
}

/// Checks a template without values: it parses, every function exists, and it executes with
/// placeholder values (`templateVariables` are not known yet, so any key is accepted). Used by
/// validation.
pub fn check(template: &str) -> Result<(), Error> {
    let model = Model {
        name: "name".into(),
        namespace: "namespace".into(),
        target: "target".into(),
        service: "service".into(),
        ingress: "ingress".into(),
        route: "route".into(),
        interval: "1m".into(),
        variables: BTreeMap::new(),
    };
    execute(template, &model, true).map(|_| ())
}

/// Collapses runs of whitespace to single spaces, as Flagger does before sending a query.
pub fn collapse_whitespace(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo-svc".into(),
            ingress: "podinfo-ing".into(),
            route: "podinfo-route".into(),
            interval: "1m".into(),
            variables: BTreeMap::from([("quantile".to_string(), "0.95".to_string())]),
        }
    }

    #[test]
    fn every_name_and_variables_render() {
        let got = render(
            "{{ name }}|{{namespace}}|{{ target }}|{{ service }}|{{ ingress }}|{{ route }}|{{ interval }}|{{ variables.quantile }}",
            &model(),
        );
        assert_eq!(
            got.as_deref(),
            Ok("podinfo|test|podinfo|podinfo-svc|podinfo-ing|podinfo-route|1m|0.95")
        );
    }

    #[test]
    fn unknown_names_are_errors_not_empty_strings() {
        assert_eq!(
            render("x{{ cluster }}", &model()),
            Err(Error::UnknownVariable("cluster".into()))
        );
        assert_eq!(
            render("{{ .namespace }}", &model()),
            Err(Error::UnknownVariable(".namespace".into()))
        );
        assert_eq!(
            render("{{ variables.missing }}", &model()),
            Err(Error::MissingVariable("missing".into()))
        );
    }

    #[test]
    fn unsupported_actions_and_unclosed_braces_are_errors() {
        assert!(matches!(
            render("{{ define \"x\" }}{{ end }}", &model()),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            render("{{ html name }}", &model()),
            Err(Error::Unsupported(_))
        ));
        assert_eq!(render("ab{{ name ", &model()), Err(Error::Unclosed(2)));
    }

    #[test]
    fn trim_markers_and_comments_follow_go() {
        assert_eq!(
            render("a  {{- name -}}  b", &model()).as_deref(),
            Ok("apodinfob")
        );
        assert_eq!(render("a {{/* note */}}b", &model()).as_deref(), Ok("a b"));
        // A minus sign without a space is part of a number, as in Go.
        assert_eq!(render("a {{-1}}", &model()).as_deref(), Ok("a -1"));
    }

    #[test]
    fn text_without_actions_is_unchanged() {
        assert_eq!(render("vector(1)", &model()).as_deref(), Ok("vector(1)"));
        assert_eq!(render("", &model()).as_deref(), Ok(""));
    }

    #[test]
    fn whitespace_collapses_to_single_spaces() {
        assert_eq!(
            collapse_whitespace("  sum(\n  rate(x[1m])\n)\t"),
            "sum( rate(x[1m]) )"
        );
    }

    /// Every MetricTemplate in `examples/` renders with a model that sets every name and the
    /// variables the example canary sets. (Inline `query` fields are sent verbatim, as in Flagger.)
    #[test]
    fn every_example_template_renders() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut queries = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("examples/ is readable") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("example is readable");
                for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                    let v: serde_json::Value =
                        serde::Deserialize::deserialize(doc).expect("example is YAML");
                    if v["kind"] == "MetricTemplate" {
                        let q = v["spec"]["query"].as_str().expect("template has a query");
                        queries.push((path.display().to_string(), q.to_string()));
                    }
                }
            }
        }
        assert!(
            queries.len() >= 13,
            "found only {} templates",
            queries.len()
        );
        for (path, q) in queries {
            let out = render(&q, &model()).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!out.contains("{{"), "{path}: left an action in {out}");
            assert!(
                out.contains("test") || out.contains("podinfo"),
                "{path}: rendered without any canary value: {out}"
            );
        }
    }

    /// What Go's `text/template` (with `missingkey=error`, nil data and Flagger's functions)
    /// prints for each template, worked out from Go's rules.
    #[test]
    fn go_template_semantics_render_as_go_would() {
        let cases: &[(&str, &str)] = &[
            // Flagger's Skipper tutorial and Skipper builtin queries.
            (
                r#"{{printf "kube(ew)?_%s__%s_canary__.*__%s_canary(_[0-9]+)?" namespace ingress service}}"#,
                "kube(ew)?_test__podinfo-ing_canary__.*__podinfo-svc_canary(_[0-9]+)?",
            ),
            (
                "{{- $route := printf \"kube(ew)?_%s__%s_canary__.*__%s_canary(_[0-9]+)?\" namespace ingress service }}\n\tsum(rate(x{route=~\"{{ $route }}\"}[{{ interval }}]))",
                "\n\tsum(rate(x{route=~\"kube(ew)?_test__podinfo-ing_canary__.*__podinfo-svc_canary(_[0-9]+)?\"}[1m]))",
            ),
            // Pipelines pass the value as the last argument.
            ("{{ namespace | printf \"%q\" }}", "\"test\""),
            (
                "{{ 3 | printf \"%d-%s\" \"x\" }}",
                "%!d(string=x)-%!s(int=3)",
            ),
            (
                "{{ printf \"%s-%s\" (printf \"%s\" name) interval }}",
                "podinfo-1m",
            ),
            // Control structures.
            (
                "{{ if eq namespace \"prod\" }}p{{ else if eq namespace \"test\" \"dev\" }}t{{ else }}o{{ end }}",
                "t",
            ),
            ("{{ if not (eq route target) }}differs{{ end }}", "differs"),
            (
                "{{ range $k, $v := variables }}{{ $k }}={{ $v }};{{ end }}",
                "quantile=0.95;",
            ),
            (
                "{{ range variables }}[{{ . }}]{{ else }}none{{ end }}",
                "[0.95]",
            ),
            ("{{ range 3 }}{{ . }}{{ end }}", "012"),
            ("{{ with variables.quantile }}q={{ . }}{{ end }}", "q=0.95"),
            ("{{ with \"\" }}x{{ else }}empty{{ end }}", "empty"),
            ("{{ $x := \"v\" }}{{ $x }}{{ $x = \"w\" }}{{ $x }}", "vw"),
            // Builtins.
            ("{{ len namespace }} {{ len variables }}", "4 1"),
            (
                "{{ index variables \"quantile\" }}|{{ index variables \"nope\" }}|",
                "0.95||",
            ),
            ("{{ index namespace 0 }}", "116"),
            (
                "{{ and true 0 }} {{ or \"\" \"x\" }} {{ not false }} {{ and 1 \"y\" }}",
                "0 x true y",
            ),
            (
                "{{ lt 1 2 }} {{ ge 2.5 2.5 }} {{ ne \"a\" \"b\" }} {{ gt \"b\" \"a\" }}",
                "true true true true",
            ),
            ("{{ print 1 2 \"a\" 3 }}", "1 2a3"),
            ("{{ println name 1 }}", "podinfo 1\n"),
            ("{{ variables }}", "map[quantile:0.95]"),
            // fmt verbs, flags, width and precision.
            ("{{ printf \"%d%%\" 5 }}", "5%"),
            (
                "{{ printf \"%5.2f|%-4s|%04d|%+d\" 3.14159 \"ab\" 42 7 }}",
                " 3.14|ab  |0042|+7",
            ),
            (
                "{{ printf \"%v %v %v %v\" 1.5 1e6 123456.0 0.0001 }}",
                "1.5 1e+06 123456 0.0001",
            ),
            (
                "{{ printf \"%g %.3g %e %.1f\" 0.00001 1234.5 1234.5678 0.25 }}",
                "1e-05 1.23e+03 1.234568e+03 0.2",
            ),
            (
                "{{ printf \"%x %X %o %b %#x %c %U\" 255 255 8 5 255 65 65 }}",
                "ff FF 10 101 0xff A U+0041",
            ),
            (
                "{{ printf \"%x %.2s %q %t\" \"hi\" \"abc\" \"a\\tb\\\"\" true }}",
                "6869 ab \"a\\tb\\\"\" true",
            ),
            ("{{ printf \"%s\" }}", "%!s(MISSING)"),
            ("{{ printf \"%d\" \"x\" }}", "%!d(string=x)"),
            ("{{ printf \"a\" 1 \"b\" }}", "a%!(EXTRA int=1, string=b)"),
            ("{{ printf \"%q\" 'x' }}", "'x'"),
            ("{{ printf \"%v|%s\" true 2 }}", "true|%!s(int=2)"),
            // Literals, comments and trimming.
            (
                "{{ `raw \\n` }}{{ 0x10 }} {{ -3 }} {{ 1_000 }}",
                "raw \\n16 -3 1000",
            ),
            ("a {{- /* c */ -}} b", "ab"),
            ("a {{/* c */}} b", "a  b"),
            (
                "x\n  {{- name }}\n  {{- namespace -}}\n  y",
                "xpodinfotesty",
            ),
            ("{{ \"}}\" }}", "}}"),
        ];
        for (template, want) in cases {
            assert_eq!(
                render(template, &model()).as_deref(),
                Ok(*want),
                "template {template:?}"
            );
        }
    }

    #[test]
    fn go_template_errors_are_errors() {
        let err = |t: &str| render(t, &model()).err();
        assert!(matches!(err("{{ eq 1 \"a\" }}"), Some(Error::Exec(_))));
        assert!(matches!(err("{{ eq 1 1.0 }}"), Some(Error::Exec(_))));
        assert!(matches!(
            err("{{ index namespace 10 }}"),
            Some(Error::Exec(_))
        ));
        assert!(matches!(err("{{ len 3 }}"), Some(Error::Exec(_))));
        assert!(matches!(err("{{ name 1 }}"), Some(Error::Exec(_))));
        assert!(matches!(err("{{ if }}x{{ end }}"), Some(Error::Parse(_))));
        assert!(matches!(err("{{ if true }}x"), Some(Error::Parse(_))));
        assert!(matches!(err("x{{ end }}"), Some(Error::Parse(_))));
        assert!(matches!(err("{{ $nope }}"), Some(Error::Parse(_))));
        assert!(matches!(err("{{ ( name }}"), Some(Error::Parse(_))));
        assert_eq!(err("{{ job }}"), Some(Error::UnknownVariable("job".into())));
        assert_eq!(
            err("{{ printf \"%s\" variables.nope }}"),
            Some(Error::MissingVariable("nope".into()))
        );
    }

    #[test]
    fn check_accepts_any_variable_key_and_rejects_unknown_functions() {
        assert_eq!(
            check("{{ variables.anything }} {{ if eq variables.x \"y\" }}{{ end }}"),
            Ok(())
        );
        assert_eq!(
            check("{{ nope }}"),
            Err(Error::UnknownVariable("nope".into()))
        );
        assert!(check("{{ .namespace }}").is_err());
    }

    /// Flagger's documented MetricTemplates render to exactly what Go sends (after Flagger's
    /// whitespace collapsing for Prometheus).
    #[test]
    fn flagger_documentation_templates_render_exactly() {
        let mut m = model();
        m.variables.insert("direction".into(), "inbound".into());
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flagger-docs");
        let query = |file: &str| -> String {
            let text = std::fs::read_to_string(dir.join(file)).expect("fixture is readable");
            let v: serde_json::Value = serde_yaml_ng::from_str(&text).expect("fixture is YAML");
            v["spec"]["query"].as_str().expect("a query").to_string()
        };
        let cases = [
            (
                "skipper-latency-template.yaml",
                r#"histogram_quantile(0.99, sum( rate( skipper_serve_route_duration_seconds_bucket{ route=~"kube(ew)?_test__podinfo-ing_canary__.*__podinfo-svc_canary(_[0-9]+)?", le="+Inf" }[1m] ) ) by (le) )"#,
            ),
            (
                "metrics-prometheus-template-variables.yaml",
                r#"histogram_quantile( 0.99, sum( rate( response_latency_ms_bucket{ namespace="test", deployment=~"podinfo", direction="inbound" }[1m] ) ) by (le) )"#,
            ),
            (
                "metrics-datadog.yaml",
                "100 - ( sum:istio.mesh.request.count{ reporter:destination, destination_workload_namespace:test, destination_workload:podinfo, !response_code:404 }.as_count() / sum:istio.mesh.request.count{ reporter:destination, destination_workload_namespace:test, destination_workload:podinfo }.as_count() ) * 100",
            ),
        ];
        for (file, want) in cases {
            let got = render(&query(file), &m).map(|q| collapse_whitespace(&q));
            assert_eq!(got.as_deref(), Ok(want), "{file}");
        }
        // Every MetricTemplate of the documentation renders.
        for entry in std::fs::read_dir(&dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let v: serde_json::Value =
                    serde::Deserialize::deserialize(doc).expect("fixture is YAML");
                if v["kind"] == "MetricTemplate" {
                    let q = v["spec"]["query"].as_str().unwrap_or_default();
                    let mut vars = m.clone();
                    vars.variables.insert("X".into(), "x".into());
                    render(q, &vars).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
            }
        }
    }
}
