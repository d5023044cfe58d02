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
//!
//! Tokens are stored packed in a `u128` each, without padding, so that two states are compared
//! a block of tokens at a time as plain memory (an export diffs every input's state against the
//! one before: hundreds of thousands of tokens each time). For that, two equal words must hold
//! equal values whichever flats they come from: field and variant names get process-wide ids
//! (by the address of their `&'static str`), and a string's token carries the refill it belongs
//! to beside its index, so strings of two different refills are compared by their text.
//!
//! A flat refilled against another ([`Flat::refill_against`]) notes, as it writes each word,
//! whether the other's word at the same position differs; a diff of the two then jumps from one
//! differing position to the next without reading the tokens between. Long sequences whose
//! elements all span as many tokens keep that stride, so the diff finds the element holding a
//! position by division rather than by stepping over the elements before it.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

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
    /// A unit enum variant, shown unquoted: the id of its name in the flat.
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
    /// A struct field or enum variant name, before its value: the id of the name in the flat.
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

/// A token as stored. The low word holds the tag (bits 0..8), a container's kind (bit 8) and
/// its length or a string's refill (bits 32..64); the high word holds the payload: the number,
/// the id or index, a container's end. Every bit is defined, so equal words are equal tokens.
type Word = u128;

const TAG_NULL: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_I64: u8 = 2;
const TAG_U64: u8 = 3;
const TAG_F64: u8 = 4;
const TAG_NAME: u8 = 5;
const TAG_TEXT: u8 = 6;
const TAG_OPEN: u8 = 7;
const TAG_KEY: u8 = 8;
const TAG_KEY_TEXT: u8 = 9;

/// Set on the id of a name kept by one refill only (the process-wide table being full).
const LOCAL_NAME: u32 = 1 << 31;

/// Names the process-wide table holds at most; later ones are kept per refill, and compared by
/// their text. Only names made at run time (leaked strings) could fill it.
const MAX_NAMES: usize = 1 << 16;

/// Field and variant names met by any flat, by address and length: equal ids are equal names.
static NAMES: LazyLock<Mutex<HashMap<(usize, usize), u32>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Numbers refills, so that a string's token names the texts it indexes.
static REFILLS: AtomicU32 = AtomicU32::new(1);

#[inline(always)]
fn word(tag: u8, low: u32, high: u64) -> Word {
    (u128::from(high) << 64) | (u128::from(low) << 32) | u128::from(tag)
}

#[inline(always)]
fn tag(word: Word) -> u8 {
    word as u8
}

#[inline(always)]
fn payload(word: Word) -> u64 {
    (word >> 64) as u64
}

#[inline(always)]
fn low(word: Word) -> u32 {
    (word >> 32) as u32
}

/// The kind of the container whose `Open` word this is.
#[inline(always)]
fn kind(word: Word) -> Kind {
    if (word >> 8) & 1 == 1 {
        Kind::Map
    } else {
        Kind::Seq
    }
}

/// The token a word stores.
#[inline]
fn decode(word: Word) -> Token {
    let high = payload(word);
    match tag(word) {
        TAG_NULL => Token::Null,
        TAG_BOOL => Token::Bool(high != 0),
        TAG_I64 => Token::I64(high as i64),
        TAG_U64 => Token::U64(high),
        TAG_F64 => Token::F64(f64::from_bits(high)),
        TAG_NAME => Token::Name(high as u32),
        TAG_TEXT => Token::Text(high as u32),
        TAG_OPEN => Token::Open {
            kind: kind(word),
            len: low(word),
            end: high as u32,
        },
        TAG_KEY => Token::Key(high as u32),
        _ => Token::KeyText(high as u32),
    }
}

/// A flattened value.
#[derive(Clone, Debug, Default)]
pub struct Flat {
    tokens: Vec<Word>,
    texts: Vec<String>,
    /// Field and variant names by their process-wide id, as far as this flat has met them: a
    /// token holds the id, which keeps tokens at 16 bytes.
    names: Vec<&'static str>,
    /// Names beyond the process-wide table, for this refill only.
    local_names: Vec<&'static str>,
    /// Recently met names by address, with their process-wide id, so that a field named a
    /// million times is looked up once.
    name_cache: Vec<(usize, usize, u32)>,
    /// This refill's number, in the tokens of its strings and local names.
    refill: u32,
    /// Sequences of at least [`STRIDED`] children that all span the same number of tokens:
    /// (position, tokens per child), by position. The diff finds a child by arithmetic there.
    strides: Vec<(u32, u32)>,
    /// While refilling against another flat ([`Flat::refill_against`]): that flat.
    baseline: Option<Arc<Flat>>,
    /// What the last refill found against its baseline.
    compared: Compared,
}

/// Which words of a flat differ from those of the flat it was refilled against, at the same
/// positions: with it, a diff of the two needs no pass over their tokens.
#[derive(Clone, Debug, Default)]
struct Compared {
    /// The baseline's refill number; 0 when there is none (or too many words differed).
    with: u32,
    /// Positions whose words differ from the baseline's, ascending.
    differing: Vec<u32>,
    /// More than [`MAX_DIFFERING`] differed: the list is not all of them.
    full: bool,
}

/// Differing positions listed at most: past them the diff compares tokens itself.
const MAX_DIFFERING: usize = 1 << 16;

/// Entries of [`Flat::name_cache`].
const NAME_CACHE: usize = 64;

/// The fewest children for which a sequence's stride is kept.
const STRIDED: u32 = 32;

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
        self.fill(value, None);
    }

    /// As [`Flat::refill`], noting on the way which tokens differ from those of `previous` at
    /// the same positions, so that diffing `previous` against this flat skips what did not
    /// change without reading both again (an export diffs every state against the one
    /// before: two passes over hundreds of thousands of tokens otherwise).
    pub fn refill_against<T: Serialize + ?Sized>(&mut self, value: &T, previous: &Arc<Flat>) {
        self.fill(value, Some(Arc::clone(previous)));
    }

    fn fill<T: Serialize + ?Sized>(&mut self, value: &T, baseline: Option<Arc<Flat>>) {
        self.tokens.clear();
        self.texts.clear();
        self.local_names.clear();
        self.strides.clear();
        self.compared.with = 0;
        self.compared.differing.clear();
        self.compared.full = false;
        self.baseline = baseline;
        // Two live flats share a number only after four billion refills.
        self.refill = REFILLS.fetch_add(1, Ordering::Relaxed);
        if self.name_cache.is_empty() {
            self.name_cache.resize(NAME_CACHE, (0, 0, 0));
        }
        if let Err(error) = value.serialize(&mut *self) {
            self.tokens.clear();
            self.texts.clear();
            self.strides.clear();
            self.baseline = None;
            self.push_text(format!("<cannot show: {error}>"));
        }
        // Sequences close innermost first, and so are their `Open` tokens compared.
        self.strides.sort_unstable();
        if let Some(baseline) = self.baseline.take() {
            if !self.compared.full {
                self.compared.differing.sort_unstable();
                self.compared.with = baseline.refill;
            }
        }
    }

    /// The root value's index.
    pub const ROOT: usize = 0;

    /// The token at `node`.
    #[inline]
    pub fn token(&self, node: usize) -> Token {
        decode(self.tokens[node])
    }

    /// Index one past the value at `node`.
    #[inline]
    pub fn end(&self, node: usize) -> usize {
        let word = self.tokens[node];
        if tag(word) == TAG_OPEN {
            payload(word) as usize
        } else {
            node + 1
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
        let word = self.tokens[node];
        (tag(word) == TAG_OPEN).then(|| (kind(word), low(word) as usize))
    }

    /// The number of tokens every child of the sequence at `node` spans, if they all span the
    /// same and there are many (otherwise `None`, which says nothing).
    #[inline]
    pub(super) fn stride(&self, node: usize) -> Option<usize> {
        let at = self
            .strides
            .binary_search_by_key(&node, |&(open, _)| open as usize)
            .ok()?;
        Some(self.strides[at].1 as usize)
    }
    /// The children of the container at `node` with their labels (nothing for a scalar).
    pub fn children(&self, node: usize) -> Children<'_> {
        let (kind, end) = match self.token(node) {
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
        match self.token(node) {
            Token::Null => Value::Null,
            Token::Bool(b) => Value::Bool(b),
            Token::I64(n) => Value::Number(n.into()),
            Token::U64(n) => Value::Number(n.into()),
            Token::F64(x) => Number::from_f64(x).map_or(Value::Null, Value::Number),
            Token::Name(name) => Value::String(self.name(name).to_owned()),
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
            Token::Key(key) => Value::String(self.name(key).to_owned()),
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
        let _ = match self.token(node) {
            Token::Null => write!(out, "null"),
            Token::Bool(b) => write!(out, "{b}"),
            Token::I64(n) => write!(out, "{n}"),
            Token::U64(n) => write!(out, "{n}"),
            Token::F64(x) => write!(out, "{x}"),
            Token::Name(name) => write!(out, "{}", self.name(name)),
            Token::Text(i) => write!(out, "{:?}", self.texts[i as usize]),
            Token::Open { .. } | Token::Key(_) | Token::KeyText(_) => Ok(()),
        };
    }

    /// Whether the values at `a` in `self` and `b` in `other` are equal.
    pub fn same(&self, a: usize, other: &Flat, b: usize) -> bool {
        let (a_end, b_end) = (self.end(a), other.end(b));
        a_end - a == b_end - b && self.common_run(a, a_end, other, b, b_end) == a_end - a
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
        let len = (a_end - a).min(b_end - b);
        if a == b {
            if let Some(differing) = self.differing_from(other) {
                return self.listed_run(a, len, other, differing);
            }
        }
        let (left, right) = (&self.tokens[a..a + len], &other.tokens[b..b + len]);
        let mut run = 0;
        loop {
            // Equal words are equal tokens; unequal ones may still be (a name met at two
            // addresses, a string of another refill, a container at another position).
            run += equal_words(&left[run..], &right[run..]);
            if run == len || !self.same_pair(decode(left[run]), other, decode(right[run])) {
                return run;
            }
            run += 1;
        }
    }

    /// The positions at which the words of `self` and `other` differ, if one was refilled
    /// against the other (and not too many differ).
    fn differing_from<'s>(&'s self, other: &'s Flat) -> Option<&'s [u32]> {
        let listed = |flat: &'s Flat, baseline: &Flat| {
            (flat.compared.with != 0 && flat.compared.with == baseline.refill)
                .then_some(flat.compared.differing.as_slice())
        };
        listed(other, self).or_else(|| listed(self, other))
    }

    /// [`Flat::common_run`] from `at` in both, for `len` tokens at most, where only the words
    /// at positions in `differing` differ.
    fn listed_run(&self, at: usize, len: usize, other: &Flat, differing: &[u32]) -> usize {
        let mut next = differing.partition_point(|&p| (p as usize) < at);
        loop {
            let stop = differing
                .get(next)
                .map_or(at + len, |&p| (p as usize).min(at + len));
            if stop == at + len || !self.same_token(stop, other, stop) {
                return stop - at;
            }
            next += 1;
        }
    }

    #[inline]
    pub(super) fn same_token(&self, i: usize, other: &Flat, j: usize) -> bool {
        let (x, y) = (self.tokens[i], other.tokens[j]);
        x == y || self.same_pair(decode(x), other, decode(y))
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
        match self.token(node) {
            Token::Key(key) => self.name(key),
            Token::KeyText(i) => &self.texts[i as usize],
            _ => "?",
        }
    }

    /// Whether name `p` of `self` and `q` of `other` are equal.
    #[inline(always)]
    fn same_name(&self, p: u32, other: &Flat, q: u32) -> bool {
        let (x, y) = (self.name(p), other.name(q));
        std::ptr::eq(x, y) || x == y
    }

    /// The name whose id is `id`.
    #[inline]
    fn name(&self, id: u32) -> &'static str {
        if id & LOCAL_NAME == 0 {
            self.names[id as usize]
        } else {
            self.local_names[(id & !LOCAL_NAME) as usize]
        }
    }

    /// The id of `name`: process-wide, looked up in the recent ones first.
    #[inline]
    fn name_id(&mut self, name: &'static str) -> u32 {
        let address = name.as_ptr() as usize;
        let slot = ((address >> 3) ^ name.len()) % NAME_CACHE;
        if let Some(&(cached, len, id)) = self.name_cache.get(slot) {
            if cached == address && len == name.len() {
                return id;
            }
        }
        self.name_id_slow(name, slot)
    }

    #[cold]
    fn name_id_slow(&mut self, name: &'static str, slot: usize) -> u32 {
        let address = name.as_ptr() as usize;
        let id = {
            let mut ids = NAMES
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let next = ids.len();
            match ids.get(&(address, name.len())) {
                Some(&id) => Some(id),
                None if next < MAX_NAMES => {
                    ids.insert((address, name.len()), next as u32);
                    Some(next as u32)
                }
                None => None,
            }
        };
        let Some(id) = id else {
            self.local_names.push(name);
            return (self.local_names.len() - 1) as u32 | LOCAL_NAME;
        };
        if self.names.len() <= id as usize {
            self.names.resize(id as usize + 1, "");
        }
        self.names[id as usize] = name;
        if let Some(entry) = self.name_cache.get_mut(slot) {
            *entry = (address, name.len(), id);
        }
        id
    }

    #[inline(always)]
    fn push(&mut self, token: Token) {
        let word = self.encode(token);
        let at = self.tokens.len();
        self.tokens.push(word);
        // An `Open` token is compared once it is closed.
        if tag(word) != TAG_OPEN {
            self.compare_with_baseline(at, word);
        }
    }

    /// Notes whether `word`, at `at`, differs from the baseline's word there.
    #[inline(always)]
    fn compare_with_baseline(&mut self, at: usize, word: Word) {
        let differs = match &self.baseline {
            Some(baseline) => baseline.tokens.get(at) != Some(&word),
            None => return,
        };
        if differs {
            self.note_differing(at);
        }
    }

    #[cold]
    fn note_differing(&mut self, at: usize) {
        if self.compared.differing.len() < MAX_DIFFERING {
            self.compared.differing.push(at as u32);
        } else {
            self.compared.full = true;
        }
    }

    /// The word storing `token` in this refill.
    #[inline(always)]
    fn encode(&self, token: Token) -> Word {
        // Strings and local names are indices into this refill's tables: its number goes with
        // them, so that they equal no word of another refill.
        let local = |id: u32| if id & LOCAL_NAME == 0 { 0 } else { self.refill };
        match token {
            Token::Null => word(TAG_NULL, 0, 0),
            Token::Bool(b) => word(TAG_BOOL, 0, u64::from(b)),
            Token::I64(n) => word(TAG_I64, 0, n as u64),
            Token::U64(n) => word(TAG_U64, 0, n),
            Token::F64(x) => word(TAG_F64, 0, x.to_bits()),
            Token::Name(id) => word(TAG_NAME, local(id), id.into()),
            Token::Text(i) => word(TAG_TEXT, self.refill, i.into()),
            Token::Open { kind, len, end } => {
                word(TAG_OPEN, len, end.into()) | (u128::from(kind == Kind::Map) << 8)
            }
            Token::Key(id) => word(TAG_KEY, local(id), id.into()),
            Token::KeyText(i) => word(TAG_KEY_TEXT, self.refill, i.into()),
        }
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

    #[inline(always)]
    fn close(&mut self, open: usize, len: u32) {
        let end = self.tokens.len() as u32;
        if let Some(word) = self.tokens.get_mut(open) {
            // The tag and kind stay.
            *word = (*word & 0xffff) | (u128::from(len) << 32) | (u128::from(end) << 64);
            let word = *word;
            self.compare_with_baseline(open, word);
        }
    }
}

/// How many words from the start of `left` and `right` are equal: the first few one by one (in
/// a state of strings, every other word differs from its twin of another refill), then a
/// block at a time, compared as memory.
#[inline]
fn equal_words(left: &[Word], right: &[Word]) -> usize {
    const FIRST: usize = 8;
    const BLOCK: usize = 32;
    let len = left.len().min(right.len());
    let mut at = 0;
    while at < len.min(FIRST) {
        if left[at] != right[at] {
            return at;
        }
        at += 1;
    }
    while at + BLOCK <= len && left[at..at + BLOCK] == right[at..at + BLOCK] {
        at += BLOCK;
    }
    while at < len && left[at] == right[at] {
        at += 1;
    }
    at
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
    /// Tokens each child spans if all span the same so far, 0 otherwise.
    stride: u32,
    wrapper: Option<usize>,
}

impl Compound<'_> {
    #[inline(always)]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.len += 1;
        let start = self.flat.tokens.len();
        value.serialize(&mut *self.flat)?;
        let span = (self.flat.tokens.len() - start) as u32;
        if self.len == 1 {
            self.stride = span;
        } else if span != self.stride {
            self.stride = 0;
        }
        Ok(())
    }

    #[inline(always)]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        let key = self.flat.name_id(key);
        self.flat.push(Token::Key(key));
        self.element(value)
    }

    #[inline(always)]
    fn finish(self) -> Result<(), FlatError> {
        self.flat.close(self.open, self.len);
        if self.stride != 0
            && self.len >= STRIDED
            && self
                .flat
                .container(self.open)
                .is_some_and(|(kind, _)| kind == Kind::Seq)
        {
            self.flat.strides.push((self.open as u32, self.stride));
        }
        if let Some(wrapper) = self.wrapper {
            self.flat.close(wrapper, 1);
        }
        Ok(())
    }
}

impl<'f> Flat {
    #[inline(always)]
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
            stride: 0,
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

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> Result<(), FlatError> {
        self.push(Token::Bool(v));
        Ok(())
    }
    #[inline(always)]
    fn serialize_i8(self, v: i8) -> Result<(), FlatError> {
        self.serialize_i64(v.into())
    }
    #[inline(always)]
    fn serialize_i16(self, v: i16) -> Result<(), FlatError> {
        self.serialize_i64(v.into())
    }
    #[inline(always)]
    fn serialize_i32(self, v: i32) -> Result<(), FlatError> {
        self.serialize_i64(v.into())
    }
    #[inline(always)]
    fn serialize_i64(self, v: i64) -> Result<(), FlatError> {
        // As serde_json: a non-negative integer is unsigned, whatever its Rust type, so that
        // equal numbers are equal tokens.
        self.push(match u64::try_from(v) {
            Ok(v) => Token::U64(v),
            Err(_) => Token::I64(v),
        });
        Ok(())
    }
    #[inline(always)]
    fn serialize_i128(self, v: i128) -> Result<(), FlatError> {
        match i64::try_from(v) {
            Ok(v) => self.serialize_i64(v),
            Err(_) => self.serialize_str(&v.to_string()),
        }
    }
    #[inline(always)]
    fn serialize_u8(self, v: u8) -> Result<(), FlatError> {
        self.serialize_u64(v.into())
    }
    #[inline(always)]
    fn serialize_u16(self, v: u16) -> Result<(), FlatError> {
        self.serialize_u64(v.into())
    }
    #[inline(always)]
    fn serialize_u32(self, v: u32) -> Result<(), FlatError> {
        self.serialize_u64(v.into())
    }
    #[inline(always)]
    fn serialize_u64(self, v: u64) -> Result<(), FlatError> {
        self.push(Token::U64(v));
        Ok(())
    }
    #[inline(always)]
    fn serialize_u128(self, v: u128) -> Result<(), FlatError> {
        match u64::try_from(v) {
            Ok(v) => self.serialize_u64(v),
            Err(_) => self.serialize_str(&v.to_string()),
        }
    }
    #[inline(always)]
    fn serialize_f32(self, v: f32) -> Result<(), FlatError> {
        self.serialize_f64(v.into())
    }
    #[inline(always)]
    fn serialize_f64(self, v: f64) -> Result<(), FlatError> {
        // As serde_json: NaN and the infinities are null.
        self.push(if v.is_finite() {
            Token::F64(v)
        } else {
            Token::Null
        });
        Ok(())
    }
    #[inline(always)]
    fn serialize_char(self, v: char) -> Result<(), FlatError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    #[inline(always)]
    fn serialize_str(self, v: &str) -> Result<(), FlatError> {
        self.push_text(v.to_owned());
        Ok(())
    }
    #[inline(always)]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), FlatError> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }
    #[inline(always)]
    fn serialize_none(self) -> Result<(), FlatError> {
        self.serialize_unit()
    }
    #[inline(always)]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), FlatError> {
        value.serialize(self)
    }
    #[inline(always)]
    fn serialize_unit(self) -> Result<(), FlatError> {
        self.push(Token::Null);
        Ok(())
    }
    #[inline(always)]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), FlatError> {
        self.serialize_unit()
    }
    #[inline(always)]
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
    #[inline(always)]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        value.serialize(self)
    }
    #[inline(always)]
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
    #[inline(always)]
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, None))
    }
    #[inline(always)]
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, None))
    }
    #[inline(always)]
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, None))
    }
    #[inline(always)]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Seq, Some(variant)))
    }
    #[inline(always)]
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Map, None))
    }
    #[inline(always)]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'f>, FlatError> {
        Ok(self.compound(Kind::Map, None))
    }
    #[inline(always)]
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
    #[inline(always)]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline(always)]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        self.field(key, value)
    }
    #[inline(always)]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        self.field(key, value)
    }
    #[inline(always)]
    fn end(self) -> Result<(), FlatError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = FlatError;
    /// Keys become text, as in JSON: a string as is, a number or unit variant by its digits or
    /// name, anything else by its one-line preview.
    #[inline(always)]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), FlatError> {
        let at = self.flat.tokens.len();
        key.serialize(&mut *self.flat)?;
        let token = match self.flat.token(at) {
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
        // What was compared of the key is compared again as the key.
        let differing = &mut self.flat.compared.differing;
        while differing.last().is_some_and(|&p| p as usize >= at) {
            differing.pop();
        }
        // A key that was a long sequence left its stride behind.
        while self
            .flat
            .strides
            .last()
            .is_some_and(|&(open, _)| open as usize >= at)
        {
            self.flat.strides.pop();
        }
        self.flat.push(token);
        Ok(())
    }
    #[inline(always)]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        self.element(value)
    }
    #[inline(always)]
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
    fn strings_compare_by_text_across_flats() {
        let words = |w: [&str; 2]| Flat::of(&BTreeMap::from([(w[0], w[1]), ("k", "v")]));
        let a = words(["a", "one"]);
        assert_eq!(a, words(["a", "one"]));
        assert_eq!(a, a.clone());
        // The same indices in their flats, other texts.
        assert_ne!(a, words(["a", "two"]));
        assert_ne!(a, words(["b", "one"]));
    }

    #[test]
    fn a_long_sequence_as_a_map_key_leaves_no_stride() {
        let key: Vec<(u32, u32)> = (0..40).map(|n| (n, n)).collect();
        let flat = Flat::of(&BTreeMap::from([(key, vec![1u8; 40])]));
        // The key's pairs were flattened where the value's bytes then went, and became text.
        assert_eq!(flat.strides, [(2, 1)]);
        assert_eq!(flat.stride(2), Some(1));
        assert_eq!(flat.container(2), Some((Kind::Seq, 40)));
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
