//! The line protocol. One request per line, one reply line per request:
//!
//! ```text
//! GET key          VALUE text | NIL
//! SET key text     OK              (text is the rest of the line, spaces included)
//! DEL key          1 | 0           (whether the key existed)
//! INCR key         the new integer | ERR not an integer
//! QUIT             (closes the connection)
//! ```
//!
//! Anything else gets `ERR` and a reason; the connection stays open.

use crate::machine::Write;

/// Longest request line, newline included; a longer one is skipped with an error reply.
pub const MAX_LINE: usize = 4096;

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read a key; answered from the state, not recorded.
    Get(String),
    /// Change the state; recorded, then applied.
    Write(Write),
    /// Close the connection.
    Quit,
}

/// Why a line is not a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is not UTF-8.
    #[error("requests are UTF-8 text")]
    NotUtf8,
    /// The line holds no command.
    #[error("empty line")]
    Empty,
    /// The first word is not a command.
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// The command needs a key or a value that is missing.
    #[error("{command} needs {missing}")]
    Missing {
        /// The command.
        command: &'static str,
        /// What it needs.
        missing: &'static str,
    },
    /// The command got words it does not take.
    #[error("{0} takes one key")]
    Extra(&'static str),
}

/// Parses one line, with or without its line ending.
pub fn parse(line: &[u8]) -> Result<Request, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let line = line.trim_end_matches(['\n', '\r']);
    let (command, rest) = split_word(line);
    let (key, value) = split_word(rest);
    let only_key = |command: &'static str| match (key, value) {
        ("", _) => Err(ParseError::Missing {
            command,
            missing: "a key",
        }),
        (key, "") => Ok(key.to_owned()),
        _ => Err(ParseError::Extra(command)),
    };
    match command.to_ascii_uppercase().as_str() {
        "" => Err(ParseError::Empty),
        "GET" => Ok(Request::Get(only_key("GET")?)),
        "DEL" => Ok(Request::Write(Write::Del {
            key: only_key("DEL")?,
        })),
        "INCR" => Ok(Request::Write(Write::Incr {
            key: only_key("INCR")?,
        })),
        "SET" if !key.is_empty() && !value.is_empty() => Ok(Request::Write(Write::Set {
            key: key.to_owned(),
            value: value.to_owned(),
        })),
        "SET" => Err(ParseError::Missing {
            command: "SET",
            missing: "a key and a value",
        }),
        "QUIT" => Ok(Request::Quit),
        _ => Err(ParseError::Unknown(command.to_owned())),
    }
}

/// The first word of `text` and the rest after the spaces that follow it.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches(' ');
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    (word, rest.trim_start_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_values_keep_their_spaces() {
        assert_eq!(parse(b"get a"), Ok(Request::Get("a".into())));
        let set = Write::Set {
            key: "greeting".into(),
            value: "hello,  world".into(),
        };
        assert_eq!(
            parse(b"SET greeting hello,  world\r\n"),
            Ok(Request::Write(set))
        );
        assert_eq!(
            parse(b"INCR n"),
            Ok(Request::Write(Write::Incr { key: "n".into() }))
        );
        assert_eq!(parse(b"QUIT"), Ok(Request::Quit));
    }

    #[test]
    fn malformed_lines_are_typed_errors() {
        assert_eq!(parse(b"  "), Err(ParseError::Empty));
        assert_eq!(parse(b"FLY away"), Err(ParseError::Unknown("FLY".into())));
        assert!(matches!(parse(b"SET k"), Err(ParseError::Missing { .. })));
        assert!(matches!(parse(b"GET"), Err(ParseError::Missing { .. })));
        assert_eq!(parse(b"DEL a b"), Err(ParseError::Extra("DEL")));
        assert_eq!(parse(b"GET \xff\n"), Err(ParseError::NotUtf8));
    }
}
