//! The texts an export stores, written straight into a buffer: JSON values exactly as
//! `serde_json::to_writer` writes them, and paths exactly as `tree::Path` displays them. Going
//! through serde and `fmt` for every number and path of every diff was most of the writer's
//! time; the common cases here (integers, keys of plain characters) are a few byte copies, and
//! anything else is handed to serde or `Display` as before.

use std::io::Write as _;

use serde_json::Value;

use crate::tree::{Path, Segment};

/// Appends `value` as compact JSON text, byte for byte what `serde_json::to_writer` writes.
pub fn push_json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(n), _) => push_u64(out, n),
            (None, Some(n)) => {
                out.push(b'-');
                push_u64(out, n.unsigned_abs());
            }
            // Floats: serde_json's shortest round-trip form (and `null` for non-finite ones).
            (None, None) => serde_fallback(out, value),
        },
        Value::String(text) => push_json_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (key, field)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_string(out, key);
                out.push(b':');
                push_json(out, field);
            }
            out.push(b'}');
        }
    }
}

/// A JSON string: quoted as is when nothing in it needs escaping (serde_json escapes only `"`,
/// `\` and control characters below 0x20), else escaped by serde_json.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_fallback(out, text);
    }
}

fn serde_fallback<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing a `Value` or a string into a Vec cannot fail: map keys are strings.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// "00" to "99", for writing two digits per division.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `n` in decimal.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a path as an export stores it: `tree::Path`'s Display (`accounts[3].balance`), the
/// root as nothing.
pub fn push_path(out: &mut Vec<u8>, path: &Path) {
    let start = out.len();
    for (i, segment) in path.0.iter().enumerate() {
        match segment {
            Segment::Key(key) if is_plain(key) => {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(key.as_bytes());
            }
            Segment::Index(index) => {
                out.push(b'[');
                push_u64(out, *index as u64);
                out.push(b']');
            }
            // A key Display may quote: let it write the whole path.
            Segment::Key(_) => {
                out.truncate(start);
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{path}");
                return;
            }
        }
    }
}

/// Whether Display writes `key` as it is: letters, digits, `_` and `-` never need quotes.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_text_is_serde_jsons() {
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(7),
            json!(10),
            json!(99),
            json!(100),
            json!(1_000_000_007),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!(1.5),
            json!(-0.0),
            json!(1e300),
            json!(0.1),
            json!(""),
            json!("plain"),
            json!("quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f}"),
            json!("ünïcödé 漢字 🎉"),
            json!([]),
            json!({}),
            json!({"b": 1, "a": [1, -2, 3.25, "x", null, {"k\"ey": {"": []}}]}),
            json!([[[]], {"deep": {"er": [true, false]}}]),
        ];
        for value in values {
            let mut out = Vec::new();
            push_json(&mut out, &value);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
        }
    }

    #[test]
    fn path_text_is_displays() {
        let key = |k: &str| Segment::Key(k.to_owned());
        let paths = [
            Path(vec![key("accounts"), Segment::Index(3), key("balance")]),
            Path(vec![Segment::Index(0), Segment::Index(17)]),
            Path(vec![key("peers"), key("10.0.0.1"), key("latency")]),
            Path(vec![key(""), key(" padded "), key("a[b]"), key("q\"")]),
            Path(vec![key("snake_case-and-dash"), key("ünï")]),
            Path(vec![key("x")]),
        ];
        for path in paths {
            let mut out = Vec::new();
            push_path(&mut out, &path);
            assert_eq!(String::from_utf8(out).unwrap(), path.to_string());
        }
        let mut out = b"kept".to_vec();
        push_path(&mut out, &Path::root());
        assert_eq!(out, b"kept", "the root is written as nothing");
    }
}
