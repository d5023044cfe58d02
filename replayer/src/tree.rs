//! States and inputs shown as trees of named values, paths into them, and the diff between two.
//!
//! The tree is derived from the machine's serde `Serialize`, as JSON values with field order
//! kept, so no machine needs display code of its own.

use std::fmt;

use serde::Serialize;
pub use serde_json::Value;

/// The tree of a serializable value. Values serde_json cannot represent (a map with non-scalar
/// keys) become a string saying so, never a failure: showing a state must not fail.
pub fn tree_of<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|error| Value::String(format!("<{error}>")))
}

/// One step of a path: a field or map key, or an index into a sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A struct field or map key.
    Key(String),
    /// A position in a sequence.
    Index(usize),
}

/// Where a value sits in a tree, written `accounts[3].balance`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Segment>);

impl Path {
    /// The root.
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path extended by `segment`.
    pub fn child(&self, segment: Segment) -> Path {
        let mut segments = self.0.clone();
        segments.push(segment);
        Path(segments)
    }

    /// Parses `accounts[3].balance` or `fees`; a key holding `.`, `[`, `]`, quotes or outer
    /// spaces is written as a JSON string in brackets: `peers["10.0.0.1"].latency`.
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut segments = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let (segment, remaining) = bracketed(after, text)?;
                segments.push(segment);
                rest = remaining;
            } else {
                let key_text = rest.strip_prefix('.').unwrap_or(rest);
                let end = key_text.find(['.', '[']).unwrap_or(key_text.len());
                if end == 0 {
                    return Err(format!("empty field name in path {text:?}"));
                }
                segments.push(Segment::Key(key_text[..end].to_owned()));
                rest = &key_text[end..];
            }
        }
        Ok(Path(segments))
    }

    /// The value at this path in `tree`, if there is one.
    pub fn lookup<'t>(&self, tree: &'t Value) -> Option<&'t Value> {
        self.0.iter().try_fold(tree, |node, segment| match segment {
            Segment::Key(key) => node.as_object()?.get(key),
            Segment::Index(index) => node.as_array()?.get(*index),
        })
    }
}

/// The segment inside `[...]` at the start of `after` (which follows the `[`), and the text after
/// the `]`.
fn bracketed<'t>(after: &'t str, text: &str) -> Result<(Segment, &'t str), String> {
    let inner = after.trim_start();
    if inner.starts_with('"') {
        let mut strings = serde_json::Deserializer::from_str(inner).into_iter::<String>();
        let key = match strings.next() {
            Some(Ok(key)) => key,
            _ => {
                return Err(format!(
                    "unterminated or invalid quoted key in path {text:?}"
                ))
            }
        };
        let rest = inner[strings.byte_offset()..].trim_start();
        let rest = rest
            .strip_prefix(']')
            .ok_or_else(|| format!("expected ']' after a quoted key in path {text:?}"))?;
        return Ok((Segment::Key(key), rest));
    }
    let close = after
        .find(']')
        .ok_or_else(|| format!("unclosed '[' in path {text:?}"))?;
    let index = after[..close]
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not an index, in path {text:?}", &after[..close]))?;
    Ok((Segment::Index(index), &after[close + 1..]))
}

/// Whether a key must be written quoted to parse back as itself.
fn needs_quotes(key: &str) -> bool {
    key.is_empty() || key.trim() != key || key.contains(['.', '[', ']', '"'])
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if needs_quotes(key) => {
                    let quoted = serde_json::to_string(key).map_err(|_| fmt::Error)?;
                    write!(f, "[{quoted}]")?
                }
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One difference between two trees.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// Where.
    pub path: Path,
    /// The value before; `None` where the path did not exist.
    pub before: Option<Value>,
    /// The value after; `None` where the path no longer exists.
    pub after: Option<Value>,
}

/// The differences between `before` and `after`, at most `limit` of them (a state of millions of
/// values may differ everywhere). Within an object, scalar fields come before nested ones.
pub fn diff(before: &Value, after: &Value, limit: usize) -> Vec<Change> {
    let mut changes = Vec::new();
    diff_into(&mut Path::root(), before, after, limit, &mut changes);
    changes
}

fn diff_into(path: &mut Path, before: &Value, after: &Value, limit: usize, out: &mut Vec<Change>) {
    if out.len() >= limit || before == after {
        return;
    }
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            // Scalar fields first: `fees: 0 → 25` says more than the thousandth changed account.
            let scalars_first = a
                .iter()
                .filter(|(key, old)| is_leaf(old) || b.get(*key).is_none_or(is_leaf));
            let containers = a
                .iter()
                .filter(|(key, old)| !is_leaf(old) && b.get(*key).is_some_and(|new| !is_leaf(new)));
            for (key, old) in scalars_first.chain(containers) {
                path.0.push(Segment::Key(key.clone()));
                match b.get(key) {
                    Some(new) => diff_into(path, old, new, limit, out),
                    None => push(out, limit, path, Some(old), None),
                }
                path.0.pop();
            }
            for (key, new) in b.iter().filter(|(key, _)| !a.contains_key(*key)) {
                path.0.push(Segment::Key(key.clone()));
                push(out, limit, path, None, Some(new));
                path.0.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for index in 0..a.len().max(b.len()) {
                path.0.push(Segment::Index(index));
                match (a.get(index), b.get(index)) {
                    (Some(old), Some(new)) => diff_into(path, old, new, limit, out),
                    (old, new) => push(out, limit, path, old, new),
                }
                path.0.pop();
            }
        }
        _ => push(out, limit, path, Some(before), Some(after)),
    }
}

/// Whether `value` is a scalar (not an object or an array).
pub fn is_leaf(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

fn push(
    out: &mut Vec<Change>,
    limit: usize,
    path: &Path,
    before: Option<&Value>,
    after: Option<&Value>,
) {
    if out.len() < limit {
        out.push(Change {
            path: path.clone(),
            before: before.cloned(),
            after: after.cloned(),
        });
    }
}

/// A short one-line rendering of a value, as a timeline shows an input: strings without quotes
/// (unit enum variants), `Variant { field: 1 }` for variants with fields, containers by size.
pub fn brief(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => format!("[{} items]", items.len()),
        Value::Object(fields) if fields.len() == 1 => {
            // An enum variant with fields: `Transfer { from: 1, to: 2, amount: 3 }`.
            let (name, inner) = fields.iter().next().expect("one field");
            format!("{name} {}", compact(inner))
        }
        Value::Object(fields) => format!("{{{} fields}}", fields.len()),
        other => other.to_string(),
    }
}

/// A compact one-line rendering of a small value, `{ from: 1, to: 2 }`.
pub fn compact(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("{key}: {}", compact(value)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        Value::Array(items) if items.len() > 8 => format!("[{} items]", items.len()),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(compact).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_parse_print_and_look_up() {
        let path = Path::parse("accounts[3].balance").unwrap();
        assert_eq!(
            path.0,
            vec![
                Segment::Key("accounts".into()),
                Segment::Index(3),
                Segment::Key("balance".into())
            ]
        );
        assert_eq!(path.to_string(), "accounts[3].balance");
        let tree = json!({"accounts": [{}, {}, {}, {"balance": 7}]});
        assert_eq!(path.lookup(&tree), Some(&json!(7)));
        assert_eq!(Path::parse("accounts[9]").unwrap().lookup(&tree), None);
        assert!(Path::parse("accounts[x]").is_err());
        assert!(Path::parse("a..b").is_err());
        assert!(Path::parse("a[1").is_err());
        let odd = Path::parse(r#"peers["10.0.0.1"].latency"#).unwrap();
        assert_eq!(odd.0[1], Segment::Key("10.0.0.1".into()));
        for key in ["10.0.0.1", "", " padded ", "a]b", "say \"hi\"", "plain"] {
            let path = Path(vec![Segment::Key("map".into()), Segment::Key(key.into())]);
            assert_eq!(Path::parse(&path.to_string()), Ok(path.clone()), "{path}");
        }
        assert!(Path::parse(r#"m["open"#).is_err());
    }

    #[test]
    fn diffs_name_changed_added_and_removed_leaves() {
        let before = json!({"fees": 1, "accounts": [{"balance": 5}, {"balance": 6}], "gone": true});
        let after = json!({"fees": 2, "accounts": [{"balance": 5}, {"balance": 9}, {"balance": 1}], "new": 0});
        let changes = diff(&before, &after, 100);
        let rendered: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {:?} {:?}", c.path, c.before, c.after))
            .collect();
        assert_eq!(
            rendered,
            vec![
                "fees Some(Number(1)) Some(Number(2))",
                "gone Some(Bool(true)) None",
                "accounts[1].balance Some(Number(6)) Some(Number(9))",
                "accounts[2] None Some(Object {\"balance\": Number(1)})",
                "new None Some(Number(0))",
            ]
        );
        assert_eq!(diff(&before, &after, 2).len(), 2);
        assert!(diff(&after, &after, 10).is_empty());
    }
}
