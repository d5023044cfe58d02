//! The value at one path of a serializable value, without building the whole tree.
//!
//! [`project`] drives the value's own `Serialize` impl with a [`Serializer`] that knows the path.
//! At each level it lets every child go by and descends only into the one the next segment names,
//! so finding `accounts[5].balance` in a ledger of a million accounts serializes one balance, not
//! a million accounts. Where the path ends, serde_json builds the subtree, so the result is exactly
//! what [`crate::tree::tree_of`] would show there.

use std::fmt::{self, Display, Write as _};

use serde::ser::{self, Error as _, Impossible, Serialize, Serializer};
use serde_json::{Error, Map, Value};

use crate::tree::Segment;

/// The value at `path` inside `value`'s tree, as [`crate::tree::tree_of`] would show it, or
/// `None` where the path does not exist or the value on the path fails to serialize.
///
/// Only the values along the path are serialized, so a failure off the path goes unnoticed
/// (where `tree_of` would have shown the whole tree as an error message).
pub fn project<T: Serialize + ?Sized>(value: &T, path: &[Segment]) -> Option<Value> {
    descend(value, path).ok().flatten()
}

/// The value at `path` inside `value`: built whole where the path ends, walked otherwise.
fn descend<T: Serialize + ?Sized>(value: &T, path: &[Segment]) -> Result<Option<Value>, Error> {
    if path.is_empty() {
        serde_json::to_value(value).map(Some)
    } else {
        value.serialize(Projector { path })
    }
}

/// Walks one value towards the end of `path`, which is never empty: the value itself is not
/// wanted, only something below it.
#[derive(Clone, Copy)]
struct Projector<'p> {
    path: &'p [Segment],
}

/// Serializer methods for values with no children: the path asks for a child, so it ends here.
macro_rules! no_children {
    ($($method:ident($($arg:ty)?)),* $(,)?) => {
        $(fn $method(self $(, _: $arg)?) -> Result<Option<Value>, Error> {
            Ok(None)
        })*
    };
}

impl<'p> Serializer for Projector<'p> {
    type Ok = Option<Value>;
    type Error = Error;
    type SerializeSeq = Elements<'p>;
    type SerializeTuple = Elements<'p>;
    type SerializeTupleStruct = Elements<'p>;
    type SerializeTupleVariant = Elements<'p>;
    type SerializeMap = Fields<'p>;
    type SerializeStruct = Fields<'p>;
    type SerializeStructVariant = Fields<'p>;

    no_children!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_none(),
    );

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Self::Ok, Error> {
        Ok(None) // a string in the tree
    }

    /// Bytes are an array of numbers in serde_json's tree.
    fn serialize_bytes(self, bytes: &[u8]) -> Result<Self::Ok, Error> {
        Ok(match self.path {
            [Segment::Index(index)] => bytes.get(*index).map(|byte| Value::from(*byte)),
            _ => None,
        })
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Error> {
        value.serialize(self)
    }

    /// `{variant: value}` in the tree.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Error> {
        match self.path.split_first() {
            Some((Segment::Key(key), rest)) if key == variant => descend(value, rest),
            _ => Ok(None),
        }
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'p>, Error> {
        Ok(Elements::seek(self.path))
    }

    fn serialize_tuple(self, _: usize) -> Result<Elements<'p>, Error> {
        Ok(Elements::seek(self.path))
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Elements<'p>, Error> {
        Ok(Elements::seek(self.path))
    }

    /// `{variant: [elements]}` in the tree.
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Elements<'p>, Error> {
        Ok(match self.path.split_first() {
            Some((Segment::Key(key), [])) if key == variant => {
                Elements::Collect(Vec::with_capacity(len))
            }
            Some((Segment::Key(key), rest)) if key == variant => Elements::seek(rest),
            _ => Elements::Skip,
        })
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Fields<'p>, Error> {
        Ok(Fields::seek(self.path))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields<'p>, Error> {
        Ok(Fields::seek(self.path))
    }

    /// `{variant: {fields}}` in the tree.
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Fields<'p>, Error> {
        Ok(match self.path.split_first() {
            Some((Segment::Key(key), [])) if key == variant => Fields::Collect(Map::new()),
            Some((Segment::Key(key), rest)) if key == variant => Fields::seek(rest),
            _ => Fields::Skip,
        })
    }

    /// Skips straight to the wanted element: for a `Vec` that is O(1), and no other element is
    /// even visited.
    fn collect_seq<I>(self, items: I) -> Result<Self::Ok, Error>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        match self.path.split_first() {
            Some((Segment::Index(index), rest)) => match items.into_iter().nth(*index) {
                Some(item) => descend(&item, rest),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Compares every key (a key serde_json cannot write fails the whole tree, and duplicates
    /// resolve to the last) but serializes only the value that wins.
    fn collect_map<K, V, I>(self, entries: I) -> Result<Self::Ok, Error>
    where
        K: Serialize,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        let Some((Segment::Key(target), rest)) = self.path.split_first() else {
            return Ok(None);
        };
        let mut winner = None;
        for (key, value) in entries {
            if key.serialize(KeyIs(target))? {
                winner = Some(value);
            }
        }
        winner.map_or(Ok(None), |value| descend(&value, rest))
    }

    /// A string in the tree; skipped without formatting it.
    fn collect_str<T: Display + ?Sized>(self, _: &T) -> Result<Self::Ok, Error> {
        Ok(None)
    }
}

/// The elements of a sequence, tuple, tuple struct or tuple variant, as the walk meets them.
enum Elements<'p> {
    /// The path does not lead in here (a key into an array, or another variant).
    Skip,
    /// Counting elements up to `target`, then following `rest` into it.
    Seek {
        target: usize,
        rest: &'p [Segment],
        next: usize,
        found: Option<Value>,
    },
    /// The path ends at this tuple variant's name, so every element is wanted.
    Collect(Vec<Value>),
}

impl<'p> Elements<'p> {
    fn seek(path: &'p [Segment]) -> Self {
        match path.split_first() {
            Some((Segment::Index(target), rest)) => Elements::Seek {
                target: *target,
                rest,
                next: 0,
                found: None,
            },
            _ => Elements::Skip,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        match self {
            Elements::Skip => {}
            Elements::Seek {
                target,
                rest,
                next,
                found,
            } => {
                if next == target {
                    *found = descend(value, rest)?;
                }
                *next += 1;
            }
            Elements::Collect(values) => values.push(serde_json::to_value(value)?),
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<Value>, Error> {
        Ok(match self {
            Elements::Skip => None,
            Elements::Seek { found, .. } => found,
            Elements::Collect(values) => Some(Value::Array(values)),
        })
    }
}

/// The one-method compound traits all do the same for elements.
macro_rules! elements_impl {
    ($($trait:ident::$method:ident),*) => {
        $(impl ser::$trait for Elements<'_> {
            type Ok = Option<Value>;
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }

            fn end(self) -> Result<Option<Value>, Error> {
                self.finish()
            }
        })*
    };
}

elements_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// The entries of a map, struct or struct variant, as the walk meets them.
enum Fields<'p> {
    /// The path does not lead in here (an index into an object, or another variant).
    Skip,
    /// Looking for the entry keyed `target`, then following `rest` into it. A later entry with
    /// the same key replaces an earlier one, as in serde_json's map.
    Seek {
        target: &'p str,
        rest: &'p [Segment],
        key_matched: bool,
        found: Option<Value>,
    },
    /// The path ends at this struct variant's name, so every field is wanted.
    Collect(Map<String, Value>),
}

impl<'p> Fields<'p> {
    fn seek(path: &'p [Segment]) -> Self {
        match path.split_first() {
            Some((Segment::Key(target), rest)) => Fields::Seek {
                target,
                rest,
                key_matched: false,
                found: None,
            },
            _ => Fields::Skip,
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        match self {
            Fields::Skip => {}
            Fields::Seek {
                target,
                rest,
                found,
                ..
            } => {
                if key == *target {
                    *found = descend(value, rest)?;
                }
            }
            Fields::Collect(map) => {
                map.insert(key.to_owned(), serde_json::to_value(value)?);
            }
        }
        Ok(())
    }

    /// Only maps call this, and maps never collect (only struct variants do).
    fn key<K: Serialize + ?Sized>(&mut self, key: &K) -> Result<(), Error> {
        if let Fields::Seek {
            target,
            key_matched,
            ..
        } = self
        {
            *key_matched = key.serialize(KeyIs(target))?;
        }
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if let Fields::Seek {
            rest,
            key_matched: true,
            found,
            ..
        } = self
        {
            *found = descend(value, rest)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<Value>, Error> {
        Ok(match self {
            Fields::Skip => None,
            Fields::Seek { found, .. } => found,
            Fields::Collect(map) => Some(Value::Object(map)),
        })
    }
}

impl ser::SerializeMap for Fields<'_> {
    type Ok = Option<Value>;
    type Error = Error;

    fn serialize_key<K: Serialize + ?Sized>(&mut self, key: &K) -> Result<(), Error> {
        self.key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.value(value)
    }

    fn end(self) -> Result<Option<Value>, Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Fields<'_> {
    type Ok = Option<Value>;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<Option<Value>, Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Fields<'_> {
    type Ok = Option<Value>;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<Option<Value>, Error> {
        self.finish()
    }
}

/// Whether a map key, written as serde_json writes keys, is the given text. Compares without
/// building the key's text, since every key of a map is compared. Keys serde_json refuses are
/// errors here too, as they would fail the whole tree.
struct KeyIs<'t>(&'t str);

/// Keys written as their `Display` text (as serde_json writes integers and chars).
macro_rules! displayed_keys {
    ($($method:ident($arg:ty)),* $(,)?) => {
        $(fn $method(self, value: $arg) -> Result<bool, Error> {
            Ok(displays_as(&value, self.0))
        })*
    };
}

/// Keys serde_json refuses.
macro_rules! refused_keys {
    ($($method:ident($($arg:ty),*) -> $ok:ty),* $(,)?) => {
        $(fn $method(self $(, _: $arg)*) -> Result<$ok, Error> {
            Err(key_must_be_a_string())
        })*
    };
}

impl Serializer for KeyIs<'_> {
    type Ok = bool;
    type Error = Error;
    type SerializeSeq = Impossible<bool, Error>;
    type SerializeTuple = Impossible<bool, Error>;
    type SerializeTupleStruct = Impossible<bool, Error>;
    type SerializeTupleVariant = Impossible<bool, Error>;
    type SerializeMap = Impossible<bool, Error>;
    type SerializeStruct = Impossible<bool, Error>;
    type SerializeStructVariant = Impossible<bool, Error>;

    displayed_keys!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
    );

    refused_keys!(
        serialize_bytes(&[u8]) -> bool,
        serialize_unit() -> bool,
        serialize_unit_struct(&'static str) -> bool,
        serialize_none() -> bool,
        serialize_seq(Option<usize>) -> Self::SerializeSeq,
        serialize_tuple(usize) -> Self::SerializeTuple,
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
        serialize_tuple_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeTupleVariant,
        serialize_map(Option<usize>) -> Self::SerializeMap,
        serialize_struct(&'static str, usize) -> Self::SerializeStruct,
        serialize_struct_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeStructVariant,
    );

    fn serialize_bool(self, value: bool) -> Result<bool, Error> {
        Ok(self.0 == if value { "true" } else { "false" })
    }

    fn serialize_f32(self, value: f32) -> Result<bool, Error> {
        Ok(float_key(value)? == self.0)
    }

    fn serialize_f64(self, value: f64) -> Result<bool, Error> {
        Ok(float_key(value)? == self.0)
    }

    fn serialize_str(self, value: &str) -> Result<bool, Error> {
        Ok(value == self.0)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<bool, Error> {
        Ok(variant == self.0)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<bool, Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, Error> {
        Err(key_must_be_a_string())
    }

    /// serde_json refuses `Some` keys too, not only `None`.
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<bool, Error> {
        Err(key_must_be_a_string())
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<bool, Error> {
        Ok(displays_as(value, self.0))
    }
}

fn key_must_be_a_string() -> Error {
    Error::custom("key must be a string")
}

/// Whether `value` displays as exactly `target`, compared as it is written rather than
/// formatted into a string first.
fn displays_as<T: Display + ?Sized>(value: &T, target: &str) -> bool {
    /// What is left of the target to match; `None` once the text has strayed from it (kept
    /// so, in case a `Display` impl ignores the error and writes on).
    struct Unmatched<'t>(Option<&'t str>);

    impl fmt::Write for Unmatched<'_> {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            self.0 = self.0.and_then(|rest| rest.strip_prefix(text));
            self.0.map(|_| ()).ok_or(fmt::Error)
        }
    }

    let mut unmatched = Unmatched(Some(target));
    // An error only means a mismatch, which `unmatched` records.
    let _ = write!(unmatched, "{value}");
    unmatched.0 == Some("")
}

/// A float key as serde_json writes it. Float keys are rare, so this asks serde_json itself to
/// write one (as the only key of a map): its float formatting is not otherwise exposed.
fn float_key<F: Serialize>(value: F) -> Result<String, Error> {
    struct OnlyKey<F>(F);

    impl<F: Serialize> Serialize for OnlyKey<F> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map([(&self.0, ())])
        }
    }

    match serde_json::to_value(OnlyKey(value))? {
        Value::Object(map) => map
            .into_iter()
            .next()
            .map(|(key, _)| key)
            .ok_or_else(|| Error::custom("float key missing from its map")),
        _ => Err(Error::custom("a map serialized as something else")),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use proptest::sample::Index;
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::project;
    use crate::tree::{tree_of, Path, Segment};

    /// What the naive projection (build the whole tree, then look up) answers.
    fn expected<T: Serialize + ?Sized>(value: &T, path: &[Segment]) -> Option<Value> {
        Path(path.to_vec()).lookup(&tree_of(value)).cloned()
    }

    fn path(text: &str) -> Vec<Segment> {
        Path::parse(text).expect("test paths parse").0
    }

    /// Every serde shape that reaches the tree: each variant kind, sequences, both kinds of map
    /// key, options, tuples, newtype and tuple structs, flattening and internal tags.
    #[derive(Clone, Debug, Serialize)]
    enum Node {
        Unit,
        Int(i64),
        Text(String),
        Pair(Box<Node>, Box<Node>),
        Record { name: String, child: Box<Node> },
        List(Vec<Node>),
        ByName(BTreeMap<String, Node>),
        ById(BTreeMap<u32, Node>),
        Maybe(Option<Box<Node>>),
        Tuple((u8, Box<Node>)),
        Struct(Box<Fielded>),
        Wrapped(Wrapper),
        Positional(Box<Positional>),
        Tagged(Box<Tagged>),
    }

    /// Flattened keys may repeat `a` or `b`: serde_json keeps the last.
    #[derive(Clone, Debug, Serialize)]
    struct Fielded {
        a: Node,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<Node>,
        #[serde(flatten)]
        extra: BTreeMap<String, Node>,
    }

    #[derive(Clone, Debug, Serialize)]
    struct Wrapper(Box<Node>);

    #[derive(Clone, Debug, Serialize)]
    struct Positional(Node, u8);

    #[derive(Clone, Debug, Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        Plain { x: Node },
        Inner(Fielded),
    }

    fn key() -> BoxedStrategy<String> {
        prop_oneof![Just("a".to_owned()), Just("b".to_owned()), "[a-d]{0,2}"].boxed()
    }

    fn node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            Just(Node::Unit),
            any::<i64>().prop_map(Node::Int),
            "[a-z]{0,3}".prop_map(Node::Text),
        ];
        leaf.prop_recursive(5, 64, 4, |inner| {
            let boxed = inner.clone().prop_map(Box::new);
            let fielded = (
                inner.clone(),
                proptest::option::of(inner.clone()),
                proptest::collection::btree_map(key(), inner.clone(), 0..3),
            )
                .prop_map(|(a, b, extra)| Fielded { a, b, extra })
                .boxed();
            prop_oneof![
                (boxed.clone(), boxed.clone()).prop_map(|(x, y)| Node::Pair(x, y)),
                ("[a-z]{0,3}", boxed.clone())
                    .prop_map(|(name, child)| Node::Record { name, child }),
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Node::List),
                proptest::collection::btree_map(key(), inner.clone(), 0..4).prop_map(Node::ByName),
                proptest::collection::btree_map(0u32..6, inner.clone(), 0..4).prop_map(Node::ById),
                proptest::option::of(boxed.clone()).prop_map(Node::Maybe),
                (any::<u8>(), boxed.clone()).prop_map(Node::Tuple),
                fielded.clone().prop_map(|f| Node::Struct(Box::new(f))),
                boxed.clone().prop_map(|b| Node::Wrapped(Wrapper(b))),
                (inner.clone(), any::<u8>())
                    .prop_map(|(n, k)| Node::Positional(Box::new(Positional(n, k)))),
                prop_oneof![
                    inner.clone().prop_map(|x| Tagged::Plain { x }),
                    fielded.prop_map(Tagged::Inner),
                ]
                .prop_map(|t| Node::Tagged(Box::new(t))),
            ]
        })
    }

    /// A path down `tree` steered by `steps`: mostly real children, sometimes a key or index
    /// that may not exist or may be of the wrong kind, and it may run on past a leaf.
    fn steered_path(tree: &Value, steps: &[(u8, Index)]) -> Vec<Segment> {
        const KEYS: [&str; 6] = ["a", "b", "kind", "Unit", "List", "zz"];
        let mut segments = Vec::new();
        let mut node = Some(tree);
        for (choice, pick) in steps {
            let segment = match (choice % 16, node) {
                (0, _) => break,
                (1, _) => Segment::Key(KEYS[pick.index(KEYS.len())].to_owned()),
                (2, _) => Segment::Index(pick.index(6)),
                (_, Some(Value::Object(map))) if !map.is_empty() => {
                    let key = map.keys().nth(pick.index(map.len())).expect("in range");
                    Segment::Key(key.clone())
                }
                (_, Some(Value::Array(items))) if !items.is_empty() => {
                    Segment::Index(pick.index(items.len()))
                }
                _ => break,
            };
            node = node.and_then(|n| Path(vec![segment.clone()]).lookup(n));
            segments.push(segment);
        }
        segments
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn projection_matches_the_whole_tree(
            node in node(),
            steps in proptest::collection::vec((any::<u8>(), any::<Index>()), 0..10),
        ) {
            let path = steered_path(&tree_of(&node), &steps);
            prop_assert_eq!(project(&node, &path), expected(&node, &path), "path {:?}", path);
        }
    }

    #[test]
    fn variants_scalars_and_kind_mismatches() {
        let node = Node::Record {
            name: "r".into(),
            child: Box::new(Node::Pair(Box::new(Node::Unit), Box::new(Node::Int(3)))),
        };
        let cases = [
            ("", Some(tree_of(&node))),
            (
                "Record",
                Some(json!({"name": "r", "child": {"Pair": ["Unit", {"Int": 3}]}})),
            ),
            ("Record.child.Pair", Some(json!(["Unit", {"Int": 3}]))),
            ("Record.child.Pair[1].Int", Some(json!(3))),
            ("Record.child.Pair[0]", Some(json!("Unit"))),
            ("Record.child.Pair[2]", None),
            ("Record.child.Pair.x", None),
            ("Record[0]", None),
            ("Record.name[0]", None),
            ("Record.name.x", None),
            ("Other", None),
            ("Record.child.Pair[1].Int.x", None),
        ];
        for (text, want) in cases {
            assert_eq!(project(&node, &path(text)), want, "{text}");
            assert_eq!(
                project(&node, &path(text)),
                expected(&node, &path(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn map_keys_are_compared_as_serde_json_writes_them() {
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        enum Colour {
            Red,
        }
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        struct Id(i8);
        #[derive(Serialize)]
        struct Keyed {
            ints: BTreeMap<i64, u8>,
            bools: BTreeMap<bool, u8>,
            chars: BTreeMap<char, u8>,
            units: BTreeMap<Colour, u8>,
            ids: BTreeMap<Id, u8>,
            floats: FloatKeyed,
        }
        /// BTreeMap cannot have float keys; a map with them must be written by hand.
        #[derive(Serialize)]
        struct FloatKeyed(#[serde(serialize_with = "float_map")] Vec<(f64, u8)>);
        fn float_map<S: serde::Serializer>(v: &[(f64, u8)], s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(v.iter().map(|(k, v)| (k, v)))
        }
        let keyed = Keyed {
            ints: [(-7, 1), (12, 2)].into(),
            bools: [(true, 3)].into(),
            chars: [('é', 4)].into(),
            units: [(Colour::Red, 5)].into(),
            ids: [(Id(-1), 6)].into(),
            floats: FloatKeyed(vec![(1.0, 7), (2.5, 8), (1e21, 9)]),
        };
        for text in [
            "ints.-7",
            "ints.12",
            "ints.012",
            "bools.true",
            "chars.é",
            "units.Red",
            "ids.-1",
            "floats.1.0",
            "floats.1",
            "floats.2.5",
            "floats.1e21",
            "floats.1e+21",
        ] {
            // `Path::parse` would split the float keys at their dots.
            let (field, key) = text.split_once('.').expect("field.key");
            let path = [Segment::Key(field.into()), Segment::Key(key.into())];
            assert_eq!(project(&keyed, &path), expected(&keyed, &path), "{text}");
        }
        assert_eq!(project(&keyed, &path("ints.-7")), Some(json!(1)));
    }

    #[test]
    fn keys_serde_json_refuses_fail_the_projection_as_they_fail_the_tree() {
        struct NanKeyed;
        impl Serialize for NanKeyed {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map([(1.5, 1), (f64::NAN, 2)])
            }
        }
        let by_pair: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let by_option: BTreeMap<Option<u8>, u8> = [(Some(1), 3)].into();
        for text in ["x", "1", "[0]"] {
            assert_eq!(project(&by_pair, &path(text)), None, "{text}");
            assert_eq!(expected(&by_pair, &path(text)), None, "{text}");
            assert_eq!(project(&by_option, &path(text)), None, "{text}");
            assert_eq!(expected(&by_option, &path(text)), None, "{text}");
        }
        let key = [Segment::Key("1.5".into())];
        assert_eq!(project(&NanKeyed, &key), None);
        assert_eq!(expected(&NanKeyed, &key), None);
    }

    #[test]
    fn duplicate_keys_resolve_to_the_last() {
        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map([("k", json!({"x": 1})), ("k", json!({"y": 2}))])
            }
        }
        // Derived structs cannot repeat a field; hand-written ones can, as can variants.
        struct StructTwice;
        impl Serialize for StructTwice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut fields = s.serialize_struct("S", 2)?;
                fields.serialize_field("k", &json!({"x": 1}))?;
                fields.serialize_field("k", &json!({"y": 2}))?;
                fields.end()
            }
        }
        struct VariantTwice;
        impl Serialize for VariantTwice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStructVariant;
                let mut fields = s.serialize_struct_variant("E", 0, "V", 2)?;
                fields.serialize_field("k", &1)?;
                fields.serialize_field("k", &2)?;
                fields.end()
            }
        }
        let value = (Twice, StructTwice, VariantTwice);
        let cases = [
            ("[0].k", Some(json!({"y": 2}))),
            ("[0].k.x", None),
            ("[0].k.y", Some(json!(2))),
            ("[1].k", Some(json!({"y": 2}))),
            ("[1].k.x", None),
            ("[2].V", Some(json!({"k": 2}))),
            ("[2].V.k", Some(json!(2))),
        ];
        for (text, want) in cases {
            assert_eq!(project(&value, &path(text)), want, "{text}");
            assert_eq!(
                project(&value, &path(text)),
                expected(&value, &path(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn bytes_are_an_array_of_numbers() {
        struct Bytes;
        impl Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&[9, 8, 7])
            }
        }
        for text in ["[1]", "[3]", "x", "[1][0]", ""] {
            assert_eq!(
                project(&Bytes, &path(text)),
                expected(&Bytes, &path(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn errors_on_the_path_are_none() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let value = (1, Fails);
        assert_eq!(project(&value, &path("[1]")), None);
        assert_eq!(project(&value, &path("")), None);
        // Off the path, the failing value is never serialized.
        assert_eq!(project(&value, &path("[0]")), Some(json!(1)));
    }

    thread_local! {
        static SERIALIZED: Cell<usize> = const { Cell::new(0) };
    }

    /// A number that counts how often it is serialized.
    struct Counted(u64);

    impl Serialize for Counted {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            SERIALIZED.with(|count| count.set(count.get() + 1));
            s.serialize_u64(self.0)
        }
    }

    #[derive(Serialize)]
    struct Account {
        balance: Counted,
    }

    /// A sequence serialized element by element rather than through `collect_seq`.
    struct ByElement(Vec<Account>);

    impl Serialize for ByElement {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            self.0
                .iter()
                .try_for_each(|item| seq.serialize_element(item))?;
            seq.end()
        }
    }

    fn serialized_while<R>(f: impl FnOnce() -> R) -> (R, usize) {
        SERIALIZED.with(|count| count.set(0));
        let result = f();
        (result, SERIALIZED.with(Cell::get))
    }

    #[test]
    fn only_the_path_is_serialized() {
        let accounts: Vec<Account> = (0..1_000_000)
            .map(|i| Account {
                balance: Counted(i),
            })
            .collect();
        let target = path("[5].balance");
        let (value, count) = serialized_while(|| project(&accounts, &target));
        assert_eq!((value, count), (Some(json!(5)), 1));

        let by_element = ByElement(accounts);
        let (value, count) = serialized_while(|| project(&by_element, &target));
        assert_eq!((value, count), (Some(json!(5)), 1));

        let by_id: BTreeMap<u32, Counted> = (0..100_000).map(|i| (i, Counted(i.into()))).collect();
        let (value, count) = serialized_while(|| project(&by_id, &path("99999")));
        assert_eq!((value, count), (Some(json!(99_999)), 1));
    }

    /// Not a check: prints how projecting compares with building the tree, for a ledger-sized
    /// state. `cargo test --release -p flightrec-replayer --lib project_timing -- --ignored
    /// --nocapture`
    #[test]
    #[ignore]
    fn project_timing() {
        #[derive(Serialize)]
        struct Entry {
            id: u64,
            owner: String,
            balance: i64,
            frozen: bool,
        }
        #[derive(Serialize)]
        struct Ledger {
            fees: u64,
            accounts: Vec<Entry>,
        }
        let ledger = Ledger {
            fees: 0,
            accounts: (0..65_536)
                .map(|id| Entry {
                    id,
                    owner: format!("owner-{id}"),
                    balance: id as i64 * 3,
                    frozen: id % 7 == 0,
                })
                .collect(),
        };
        let target = path("accounts[40000].balance");
        let rounds = 20;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(tree_of(&ledger));
        }
        let whole = start.elapsed() / rounds;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(project(&ledger, &target));
        }
        let projected = start.elapsed() / rounds;
        println!("tree_of: {whole:?} per call; project: {projected:?} per call");
        assert_eq!(project(&ledger, &target), expected(&ledger, &target));
    }
}
