//! A value flattened into a token array by its serde `Serialize`.
//!
//! The replayer shows states as `serde_json::Value` trees, which costs an allocation per node:
//! tens of milliseconds for a state of 65,536 accounts, too slow to redo on every key press or
//! for every input of an export. A [`Flat`] holds the same tree as one `Vec` of 16-byte tokens,
//! built in a single pass without per-node allocation; every container records where it ends,
//! so a view can skip a collapsed subtree in one step and only the rows on screen are ever
//! formatted.
//!
//! The shape matches `serde_json`'s (struct and map → object, sequence and tuple → array,
//! externally tagged enums, `None` → null, non-negative integers unsigned, non-finite floats
//! null), so a path into a `Flat` is a path into the replayer's tree, `History::last_change`
//! understands it, and [`Flat::to_value`] gives what [`crate::tree::tree_of`] gives.

use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};

/// One token. A value is a scalar token, or an `Open` token followed by its children up to `end`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Token {
    /// `null`: `None`, `()`, unit structs.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A unit enum variant, shown unquoted: index into the flat's static names.
    Name(u32),
    /// A string, index into [`Flat::texts`].
    Text(u32),
    /// The start of a sequence (children are values) or a map (children are key, value pairs).
    Open {
        /// Sequence or map.
        kind: Kind,
        /// Number of children (pairs, for a map).
        len: u32,
        /// Index one past the container's last token.
        end: u32,
    },
    /// A struct field or enum variant name, before its value: index into the flat's static
    /// names.
    Key(u32),
    /// A map key, index into [`Flat::texts`], before its value.
    KeyText(u32),
}

/// Kinds of container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Array-like: elements by position.
    Seq,
    /// Object-like: named fields or keyed entries.
    Map,
}

/// A flattened value.
#[derive(Clone, Debug, Default)]
pub struct Flat {
    tokens: Vec<Token>,
    texts: Vec<String>,
    /// Field and variant names: a token holds an index here, which keeps tokens at 16 bytes.
    names: Vec<&'static str>,
    /// Recently named names by address, so that a field named a million times is stored once.
    name_cache: Vec<(usize, usize, u32)>,
}

/// Entries of [`Flat::name_cache`].
const NAME_CACHE: usize = 64;

/// Flats are equal when the values they hold are.
impl PartialEq for Flat {
    fn eq(&self, other: &Flat) -> bool {
        self.len() == other.len() && (self.is_empty() || self.same(Flat::ROOT, other, Flat::ROOT))
    }
}

/// What one child of a container is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Label<'f> {
    /// The n-th element of a sequence.
    Index(usize),
    /// A field or key.
    Key(&'f str),
}

impl Flat {
    /// Flattens `value`. A value whose `Serialize` fails becomes a string saying so: showing a
    /// state must not fail.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Flat {
        let mut flat = Flat::default();
        flat.refill(value);
        flat
    }

    /// Flattens `value` into this `Flat`'s memory: a state of a million tokens flattened into
    /// fresh memory spends as long faulting pages in as serializing.
    pub fn refill<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.tokens.clear();
        self.texts.clear();
        self.names.clear();
        self.name_cache.clear();
        self.name_cache.resize(NAME_CACHE, (0, 0, 0));
        if let Err(error) = value.serialize(&mut *self) {
            self.tokens.clear();
            self.texts.clear();
            self.push_text(format!("<cannot show: {error}>"));
        }
    }

    /// The root value's index.
    pub const ROOT: usize = 0;

    /// The token at `node`.
    pub fn token(&self, node: usize) -> Token {
        self.tokens[node]
    }

    /// Index one past the value at `node`.
    #[inline]
    pub fn end(&self, node: usize) -> usize {
        match self.tokens[node] {
            Token::Open { end, .. } => end as usize,
            _ => node + 1,
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing was flattened.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The container at `node`, if it is one: its kind and number of children.
    #[inline]
    pub fn container(&self, node: usize) -> Option<(Kind, usize)> {
        match self.tokens[node] {
            Token::Open { kind, len, .. } => Some((kind, len as usize)),
            _ => None,
        }
    }

    /// The children of the container at `node` with their labels (nothing for a scalar).
    pub fn children(&self, node: usize) -> Children<'_> {
        let (kind, end) = match self.tokens[node] {
            Token::Open { kind, end, .. } => (Some(kind), end as usize),
            _ => (None, node),
        };
        Children {
            flat: self,
            kind,
            at: node + 1,
            end,
            index: 0,
        }
    }

    /// The child of the container at `node` labelled `label`.
    pub fn child(&self, node: usize, label: Label<'_>) -> Option<usize> {
        match (self.container(node)?, label) {
            ((Kind::Seq, len), Label::Index(i)) if i < len => {
                self.children(node).nth(i).map(|(_, child)| child)
            }
            ((Kind::Map, _), Label::Key(key)) => self
                .children(node)
                .find(|(l, _)| *l == Label::Key(key))
                .map(|(_, child)| child),
            _ => None,
        }
    }

    /// Writes the value at `node` on one line, stopping once `out` reaches `max` bytes (it ends
    /// in `…` then).
    pub fn preview(&self, node: usize, max: usize, out: &mut String) {
        let start = out.len();
        self.write_preview(node, start + max, out);
        if out.len() > start + max {
            let mut cut = start + max.saturating_sub(1);
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
    }

    /// The one-line preview of the value at `node`, at most `max` bytes.
    pub fn preview_string(&self, node: usize, max: usize) -> String {
        let mut out = String::new();
        self.preview(node, max, &mut out);
        out
    }

    /// The value at `node` as a JSON tree, as [`crate::tree::tree_of`] would give it.
    pub fn to_value(&self, node: usize) -> Value {
        match self.tokens[node] {
            Token::Null => Value::Null,
            Token::Bool(b) => Value::Bool(b),
            Token::I64(n) => Value::Number(n.into()),
            Token::U64(n) => Value::Number(n.into()),
            Token::F64(x) => Number::from_f64(x).map_or(Value::Null, Value::Number),
            Token::Name(name) => Value::String(self.names[name as usize].to_owned()),
            Token::Text(i) => Value::String(self.texts[i as usize].clone()),
            Token::Open {
                kind: Kind::Seq,
                len,
                ..
            } => {
                let mut items = Vec::with_capacity(len as usize);
                items.extend(self.children(node).map(|(_, child)| self.to_value(child)));
                Value::Array(items)
            }
            Token::Open {
                kind: Kind::Map, ..
            } => {
                let mut fields = Map::new();
                for (label, child) in self.children(node) {
                    if let Label::Key(key) = label {
                        fields.insert(key.to_owned(), self.to_value(child));
                    }
                }
                Value::Object(fields)
            }
            // Labels are read by their container.
            Token::Key(key) => Value::String(self.names[key as usize].to_owned()),
            Token::KeyText(i) => Value::String(self.texts[i as usize].clone()),
        }
    }

    fn write_preview(&self, node: usize, limit: usize, out: &mut String) {
        let Some((kind, _)) = self.container(node) else {
            self.write_scalar(node, out);
            return;
        };
        let (open, close) = match kind {
            Kind::Seq => ("[", "]"),
            Kind::Map => ("{ ", " }"),
        };
        out.push_str(open);
        for (n, (label, child)) in self.children(node).enumerate() {
            if out.len() > limit {
                return;
            }
            if n > 0 {
                out.push_str(", ");
            }
            if let Label::Key(key) = label {
                let _ = write!(out, "{key}: ");
            }
            self.write_preview(child, limit, out);
        }
        out.push_str(if self.children(node).next().is_none() {
            close.trim_start()
        } else {
            close
        });
    }

    fn write_scalar(&self, node: usize, out: &mut String) {
        let _ = match self.tokens[node] {
            Token::Null => write!(out, "null"),
            Token::Bool(b) => write!(out, "{b}"),
            Token::I64(n) => write!(out, "{n}"),
            Token::U64(n) => write!(out, "{n}"),
            Token::F64(x) => write!(out, "{x}"),
            Token::Name(name) => write!(out, "{}", self.names[name as usize]),
            Token::Text(i) => write!(out, "{:?}", self.texts[i as usize]),
            Token::Open { .. } | Token::Key(_) | Token::KeyText(_) => Ok(()),
        };
    }

    /// Whether the values at `a` in `self` and `b` in `other` are equal.
    pub fn same(&self, a: usize, other: &Flat, b: usize) -> bool {
        let (a_end, b_end) = (self.end(a), other.end(b));
        if a_end - a != b_end - b {
            return false;
        }
        (a..a_end)
            .zip(b..b_end)
            .all(|(i, j)| self.same_token(i, other, j))
    }

    /// How many tokens from `a` in `self` and `b` in `other` are equal, one by one, stopping at
    /// `a_end` and `b_end`: every value that lies wholly within them is equal to its twin.
    pub fn common_run(
        &self,
        a: usize,
        a_end: usize,
        other: &Flat,
        b: usize,
        b_end: usize,
    ) -> usize {
        let (left, right) = (&self.tokens[a..a_end], &other.tokens[b..b_end]);
        let mut run = 0;
        for (x, y) in left.iter().zip(right) {
            // The tokens most of a state is made of first, compared in place.
            let same = match (x, y) {
                (Token::U64(p), Token::U64(q)) => p == q,
                (Token::Key(p), Token::Key(q)) => self.same_name(*p, other, *q),
                (
                    Token::Open {
                        kind: k, len: l, ..
                    },
                    Token::Open { kind, len, .. },
                ) => k == kind && l == len,
                _ => self.same_pair(*x, other, *y),
            };
            if !same {
                break;
            }
            run += 1;
        }
        run
    }

    #[inline]
    pub(super) fn same_token(&self, i: usize, other: &Flat, j: usize) -> bool {
        self.same_pair(self.tokens[i], other, other.tokens[j])
    }

    /// Whether token `x` of `self` and `y` of `other` are equal.
    #[inline(always)]
    fn same_pair(&self, x: Token, other: &Flat, y: Token) -> bool {
        match (x, y) {
            (Token::U64(p), Token::U64(q)) => p == q,
            // Field and variant names are the same `&'static str` almost always.
            (Token::Key(p), Token::Key(q)) | (Token::Name(p), Token::Name(q)) => {
                self.same_name(p, other, q)
            }
            (Token::Text(p), Token::Text(q)) | (Token::KeyText(p), Token::KeyText(q)) => {
                self.texts[p as usize] == other.texts[q as usize]
            }
            // Positions inside each array differ; shapes were compared by span length.
            (
                Token::Open {
                    kind: k, len: l, ..
                },
                Token::Open { kind, len, .. },
            ) => k == kind && l == len,
            (x, y) => x == y,
        }
    }

    pub(super) fn key_label(&self, node: usize) -> &str {
        match self.tokens[node] {
            Token::Key(key) => self.names[key as usize],
            Token::KeyText(i) => &self.texts[i as usize],
            _ => "?",
        }
    }

    /// Whether static name `p` of `self` and `q` of `other` are equal.
    #[inline(always)]
    fn same_name(&self, p: u32, other: &Flat, q: u32) -> bool {
        let (x, y) = (self.names[p as usize], other.names[q as usize]);
        std::ptr::eq(x, y) || x == y
    }

    /// The index of `name` among the static names, added if it is not among the recent ones.
    #[inline]
    fn name_id(&mut self, name: &'static str) -> u32 {
        let address = name.as_ptr() as usize;
        let slot = ((address >> 3) ^ name.len()) % NAME_CACHE;
        if let Some(&(cached, len, id)) = self.name_cache.get(slot) {
            if cached == address && len == name.len() {
                return id;
            }
        }
        let id = self.names.len() as u32;
        self.names.push(name);
        if let Some(entry) = self.name_cache.get_mut(slot) {
            *entry = (address, name.len(), id);
        }
        id
    }

    #[inline]
    fn push(&mut self, token: Token) {
        self.tokens.push(token);
    }

    #[inline]
    fn push_text(&mut self, text: String) {
        let index = self.texts.len() as u32;
        self.texts.push(text);
        self.push(Token::Text(index));
    }

    #[inline]
    fn open(&mut self, kind: Kind) -> usize {
        self.push(Token::Open {
            kind,
            len: 0,
            end: 0,
        });
        self.tokens.len() - 1
    }

    #[inline]
    fn close(&mut self, open: usize, len: u32) {
        let end = self.tokens.len() as u32;
        if let Token::Open { kind, .. } = self.tokens[open] {
            self.tokens[open] = Token::Open { kind, len, end };
        }
    }
}

/// The children of a container, each with its label.
pub struct Children<'f> {
    flat: &'f Flat,
    kind: Option<Kind>,
    at: usize,
    end: usize,
    index: usize,
}

impl<'f> Iterator for Children<'f> {
    type Item = (Label<'f>, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        let item = match self.kind? {
            Kind::Seq => (Label::Index(self.index), self.at),
            Kind::Map => (Label::Key(self.flat.key_label(self.at)), self.at + 1),
        };
        self.at = self.flat.end(item.1);
        self.index += 1;
        Some(item)
    }
}

/// Why a value could not be flattened (its own `Serialize` refused).
#[derive(Debug)]
pub struct FlatError(String);

impl fmt::Display for FlatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlatError {}

impl ser::Error for FlatError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FlatError(msg.to_string())
    }
}

/// An open container being filled. `wrapper` is the one-entry map of an enum variant that
/// encloses it, closed with it.
pub struct Compound<'f> {
    flat: &'f mut Flat,
    open: usize,
    len: u32,
    wrapper: Option<usize>,
}

impl Compound<'_> {
    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.len += 1;
        value.serialize(&mut *self.flat)
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        let key = self.flat.name_id(key);
        self.flat.push(Token::Key(key));
        self.element(value)
    }

    #[inline]
    fn finish(self) -> Result<(), FlatError> {
        self.flat.close(self.open, self.len);
        if let Some(wrapper) = self.wrapper {
            self.flat.close(wrapper, 1);
        }
        Ok(())
    }
}

impl<'f> Flat {
    #[inline]
    fn compound(&'f mut self, kind: Kind, variant: Option<&'static str>) -> Compound<'f> {
        let wrapper = variant.map(|name| {
            let wrapper = self.open(Kind::Map);
            let name = self.name_id(name);
            self.push(Token::Key(name));
            wrapper
        });
        let open = self.open(kind);
        Compound {
            flat: self,
            open,
            len: 0,
            wrapper,
        }
    }
}

impl<'f> ser::Serializer for &'f mut Flat {
    type Ok = ();
    type Error = FlatError;
    type SerializeSeq = Compound<'f>;
    type SerializeTuple = Compound<'f>;
    type SerializeTupleStruct = Compound<'f>;
    type SerializeTupleVariant = Compound<'f>;
    type SerializeMap = Compound<'f>;
    type SerializeStruct = Compound<'f>;
    type SerializeStructVariant = Compound<'f>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), FlatError> {
        self.push(Token::Bool(v));
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), FlatError> {
        self.serialize_i64(v.into())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), FlatError> {
        self.serialize_i64(v.into())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), FlatError> {
        self.serialize_i64(v.into())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), FlatError> {
        // As serde_json: a non-negative integer is unsigned, whatever its Rust type, so that
        // equal numbers are equal tokens.
        self.push(match u64::try_from(v) {
            Ok(v) => Token::U64(v),
            Err(_) => Token::I64(v),
        });
        Ok(())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), FlatError> {
        match i64::try_from(v) {
            Ok(v) => self.serialize_i64(v),
            Err(_) => self.serialize_str(&v.to_string()),
        }
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), FlatError> {
        self.serialize_u64(v.into())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), FlatError> {
        self.serialize_u64(v.into())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), FlatError> {
        self.serialize_u64(v.into())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), FlatError> {
        self.push(Token::U64(v));
        Ok(())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), FlatError> {
        match u64::try_from(v) {
            Ok(v) => self.serialize_u64(v),
            Err(_) => self.serialize_str(&v.to_string()),
        }
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), FlatError> {
        self.serialize_f64(v.into())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), FlatError> {
        // As serde_json: NaN and the infinities are null.
        self.push(if v.is_finite() {
            Token::F64(v)
        } else {
            Token::Null
        });
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), FlatError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), FlatError> {
        self.push_text(v.to_owned());
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), FlatError> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }
    #[inline]
    fn serialize_none(self) -> Result<(), FlatError> {
        self.serialize_unit()
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), FlatError> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), FlatError> {
        self.push(Token::Null);
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), FlatError> {
        self.serialize_unit()
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), FlatError> {
        let variant = self.name_id(variant);
        self.push(Token::Name(variant));
        Ok(())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        let open = self.open(Kind::Map);
        let variant = self.name_id(variant);
        self.push(Token::Key(variant));
        value.serialize(&mut *self)?;
        self.close(open, 1);
        Ok(())
    }
    #[inline]
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, None))
    }
    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, None))
    }
    #[inline]
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, None))
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, Some(variant)))
    }
    #[inline]
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Map, None))
    }
    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Map, None))
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Map, Some(variant)))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        self.field(key, value)
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        self.field(key, value)
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    /// Keys become text, as in JSON: a string as is, a number or unit variant by its digits or
    /// name, anything else by its one-line preview.
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), FlatError> {
        let at = self.flat.tokens.len();
        key.serialize(&mut *self.flat)?;
        let token = match self.flat.tokens[at] {
            Token::Text(i) if self.flat.tokens.len() == at + 1 => Token::KeyText(i),
            Token::Name(name) => Token::Key(name),
            _ => {
                let text = self.flat.preview_string(at, 200);
                self.flat.tokens.truncate(at);
                self.flat.texts.push(text);
                Token::KeyText(self.flat.texts.len() as u32 - 1)
            }
        };
        self.flat.tokens.truncate(at);
        self.flat.push(token);
        Ok(())
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    enum Input {
        Open { deposit: u64 },
        Audit,
        Pair(u8, i8),
        Wrapped(Option<u32>),
    }

    #[derive(Serialize)]
    struct State {
        accounts: Vec<(u32, bool)>,
        names: BTreeMap<u16, String>,
        inputs: Vec<Input>,
        ratio: f32,
        unit: (),
    }

    fn sample() -> State {
        State {
            accounts: vec![(1, true), (2, false)],
            names: BTreeMap::from([(7, "seven".to_owned())]),
            inputs: vec![
                Input::Open { deposit: 5 },
                Input::Audit,
                Input::Pair(1, -1),
                Input::Wrapped(None),
            ],
            ratio: 0.5,
            unit: (),
        }
    }

    #[test]
    fn previews_match_the_json_shape() {
        let flat = Flat::of(&sample());
        assert_eq!(
            flat.preview_string(Flat::ROOT, 500),
            "{ accounts: [[1, true], [2, false]], names: { 7: \"seven\" }, inputs: \
             [{ Open: { deposit: 5 } }, Audit, { Pair: [1, -1] }, { Wrapped: null }], \
             ratio: 0.5, unit: null }"
        );
        assert_eq!(flat.preview_string(Flat::ROOT, 20), "{ accounts: [[1, tr…");
    }

    #[test]
    fn children_are_labelled_and_skip_whole_subtrees() {
        let flat = Flat::of(&sample());
        let labels: Vec<Label<'_>> = flat.children(Flat::ROOT).map(|(l, _)| l).collect();
        assert_eq!(
            labels,
            [
                Label::Key("accounts"),
                Label::Key("names"),
                Label::Key("inputs"),
                Label::Key("ratio"),
                Label::Key("unit")
            ]
        );
        let inputs = flat.child(Flat::ROOT, Label::Key("inputs")).unwrap();
        assert_eq!(flat.container(inputs), Some((Kind::Seq, 4)));
        let pair = flat.child(inputs, Label::Index(2)).unwrap();
        let inner = flat.child(pair, Label::Key("Pair")).unwrap();
        assert_eq!(flat.preview_string(inner, 50), "[1, -1]");
        assert_eq!(flat.child(inputs, Label::Index(4)), None);
        assert_eq!(
            flat.children(flat.child(Flat::ROOT, Label::Key("ratio")).unwrap())
                .count(),
            0
        );
    }

    #[test]
    fn equal_values_compare_equal_wherever_they_sit() {
        let a = Flat::of(&sample());
        let mut changed = sample();
        changed.names.insert(7, "SEVEN".into());
        let b = Flat::of(&changed);
        let names = |f: &Flat| f.child(Flat::ROOT, Label::Key("names")).unwrap();
        let accounts = |f: &Flat| f.child(Flat::ROOT, Label::Key("accounts")).unwrap();
        assert!(a.same(accounts(&a), &b, accounts(&b)));
        assert!(!a.same(names(&a), &b, names(&b)));
        assert!(!a.same(Flat::ROOT, &b, Flat::ROOT));
        assert!(a.same(Flat::ROOT, &Flat::of(&sample()), Flat::ROOT));
    }

    #[test]
    fn values_are_what_serde_json_gives() {
        #[derive(Serialize)]
        struct Odd {
            signed: i32,
            negative: i64,
            nan: f64,
            big: u128,
            nested: Vec<Option<(u8, String)>>,
        }
        let odd = Odd {
            signed: 5,
            negative: -5,
            nan: f64::NAN,
            big: 7,
            nested: vec![None, Some((1, "x".into()))],
        };
        assert_eq!(
            Flat::of(&sample()).to_value(Flat::ROOT),
            crate::tree::tree_of(&sample())
        );
        assert_eq!(
            Flat::of(&odd).to_value(Flat::ROOT),
            crate::tree::tree_of(&odd)
        );
        assert!(Flat::of(&5i32).same(Flat::ROOT, &Flat::of(&5u64), Flat::ROOT));
    }
}
