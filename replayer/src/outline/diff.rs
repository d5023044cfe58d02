//! What changed between two states, leaf by leaf, in one walk over both token arrays.
//!
//! Each unchanged subtree is dismissed with one comparison loop over its tokens, so the diff of
//! two large states that differ in a few leaves costs about one pass over their tokens, and
//! nothing is allocated for what did not change.

use std::collections::HashMap;

use crate::tree::{self, Path, Segment};

use super::flat::{Flat, Kind, Label};

/// Longest preview of a value in a change, in bytes.
const PREVIEW: usize = 120;

/// One changed value: `before` is `None` where it was added, `after` where it was removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Where.
    pub path: Path,
    /// Its value before, on one line.
    pub before: Option<String>,
    /// Its value after, on one line.
    pub after: Option<String>,
}

/// The values that differ between `before` and `after`, at most `limit`, in tree order, as
/// one-line previews. Scalars are compared; a container whose shape changed is reported whole.
pub fn diff(before: &Flat, after: &Flat, limit: usize) -> Vec<Change> {
    let mut out = Vec::new();
    walk(before, after, limit, Order::Tree, &mut |path, a, b| {
        out.push(Change {
            path: Path(path.to_vec()),
            before: a.map(|i| before.preview_string(i, PREVIEW)),
            after: b.map(|i| after.preview_string(i, PREVIEW)),
        })
    });
    out
}

/// The values that differ between `before` and `after`, at most `limit`, as
/// [`tree::diff`] gives them for the trees of the same values: the same changes, with the same
/// values, in the same order (within an object, scalar fields before nested ones). It costs
/// one pass over the tokens and a tree only for what changed, where [`tree::diff`] of two
/// whole trees costs building them.
pub fn tree_diff(before: &Flat, after: &Flat, limit: usize) -> Vec<tree::Change> {
    let mut out = Vec::new();
    walk(
        before,
        after,
        limit,
        Order::ScalarsFirst,
        &mut |path, a, b| {
            out.push(tree::Change {
                path: Path(path.to_vec()),
                before: a.map(|i| before.to_value(i)),
                after: b.map(|i| after.to_value(i)),
            })
        },
    );
    out
}

/// In which order the fields of an object are visited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// As they come.
    Tree,
    /// Fields whose value is (or becomes, or was removed as) a scalar first, then the fields
    /// holding containers on both sides, as [`tree::diff`] does; added fields last.
    ScalarsFirst,
}

/// Reports each change as its path and the nodes before and after (`None`: absent).
type Emit<'e> = dyn FnMut(&[Segment], Option<usize>, Option<usize>) + 'e;

fn walk(before: &Flat, after: &Flat, limit: usize, order: Order, emit: &mut Emit<'_>) {
    let mut walk = Walk {
        a: before,
        b: after,
        path: Vec::new(),
        found: 0,
        limit,
        order,
        emit,
    };
    if !before.is_empty() && !after.is_empty() {
        walk.value(Flat::ROOT, Flat::ROOT, 0);
    }
}

struct Walk<'f, 'e> {
    a: &'f Flat,
    b: &'f Flat,
    path: Vec<Segment>,
    found: usize,
    limit: usize,
    order: Order,
    emit: &'e mut Emit<'e>,
}

impl<'f> Walk<'f, '_> {
    /// Compares the values at `ia` and `ib`, whose tokens before `hint` (in `a`; in lockstep in
    /// `b`) an enclosing scan has found equal already.
    fn value(&mut self, ia: usize, ib: usize, hint: usize) {
        if self.found >= self.limit {
            return;
        }
        // Containers are compared by `seq` and `map`, which skip their equal children in one
        // scan of the tokens (and find nothing if all are equal).
        match (self.a.container(ia), self.b.container(ib)) {
            (Some((Kind::Seq, _)), Some((Kind::Seq, _))) => self.seq(ia, ib, hint),
            (Some((Kind::Map, _)), Some((Kind::Map, _))) => self.map(ia, ib, hint),
            (None, None) if self.a.same_token(ia, self.b, ib) => {}
            _ => self.push(Some(ia), Some(ib)),
        }
    }

    fn seq(&mut self, ia: usize, ib: usize, hint: usize) {
        let (a, b) = (self.a, self.b);
        let (a_end, b_end) = (a.end(ia), b.end(ib));
        // The next children, and their index.
        let (mut ca, mut cb, mut index) = (ia + 1, ib + 1, 0);
        let mut known = hint.saturating_sub(ca);
        while ca < a_end && cb < b_end && self.found < self.limit {
            // Skip the equal children before the first differing token in one scan, rather
            // than comparing child by child: a long array of small values changes in a few.
            let stop = run_end(a, ca, a_end, b, cb, b_end, std::mem::take(&mut known));
            // The twins of the children passed span as many tokens in `b`: the run's tokens
            // are equal one by one.
            let (next, passed) = whole_children(a, ia, ca, stop);
            (ca, cb, index) = (next, cb + (next - ca), index + passed);
            if ca >= a_end || cb >= b_end {
                break;
            }
            self.path.push(Segment::Index(index));
            self.value(ca, cb, stop);
            self.path.pop();
            (ca, cb, index) = (a.end(ca), b.end(cb), index + 1);
        }
        // What one side has beyond the other's end.
        while (ca < a_end || cb < b_end) && self.found < self.limit {
            self.path.push(Segment::Index(index));
            let (old, new) = ((ca < a_end).then_some(ca), (cb < b_end).then_some(cb));
            self.push(old, new);
            self.path.pop();
            ca = old.map_or(ca, |c| a.end(c));
            cb = new.map_or(cb, |c| b.end(c));
            index += 1;
        }
    }

    fn map(&mut self, ia: usize, ib: usize, hint: usize) {
        let (a, b) = (self.a, self.b);
        // The passes over the fields: all at once, or scalars then containers.
        let passes: &[Option<bool>] = match self.order {
            Order::Tree => &[None],
            Order::ScalarsFirst => &[Some(false), Some(true)],
        };
        // Whether a pair of fields belongs to a pass: containers on both sides, or not.
        let in_pass = |pass: Option<bool>, ca: usize, cb: Option<usize>| {
            let nested =
                a.container(ca).is_some() && cb.is_some_and(|cb| b.container(cb).is_some());
            pass.is_none_or(|containers| containers == nested)
        };
        if let Some(differing) = self.aligned_differences(ia, ib, hint) {
            // Structs, and maps that kept their keys in their order: only the fields whose
            // values differ, found in one scan.
            for &pass in passes {
                for &(key, ca, cb, stop) in &differing {
                    if in_pass(pass, ca, Some(cb)) {
                        self.keyed(Label::Key(key), Some(ca), Some(cb), stop);
                    }
                }
            }
            return;
        }
        let after: HashMap<Label<'f>, usize> = b.children(ib).collect();
        for &pass in passes {
            for (label, ca) in a.children(ia) {
                let cb = after.get(&label).copied();
                if in_pass(pass, ca, cb) {
                    self.keyed(label, Some(ca), cb, 0);
                }
            }
        }
        let before: HashMap<Label<'f>, usize> = a.children(ia).collect();
        for (label, cb) in b.children(ib) {
            if !before.contains_key(&label) {
                self.keyed(label, None, Some(cb), 0);
            }
        }
    }

    /// When the maps at `ia` and `ib` have the same keys in the same order: the key and the
    /// values of each field whose values differ. Equal fields are skipped in one scan of the
    /// tokens, as in `seq`.
    #[allow(clippy::type_complexity)]
    fn aligned_differences(
        &self,
        ia: usize,
        ib: usize,
        hint: usize,
    ) -> Option<Vec<(&'f str, usize, usize, usize)>> {
        let (a, b) = (self.a, self.b);
        let (a_end, b_end) = (a.end(ia), b.end(ib));
        let mut differing = Vec::new();
        // Each entry is a key token followed by its value.
        let (mut ka, mut kb) = (ia + 1, ib + 1);
        let mut known = hint.saturating_sub(ka);
        while ka < a_end && kb < b_end {
            let stop = run_end(a, ka, a_end, b, kb, b_end, std::mem::take(&mut known));
            while ka < a_end && kb < b_end && a.end(ka + 1) <= stop {
                (ka, kb) = (a.end(ka + 1), b.end(kb + 1));
            }
            if ka >= a_end || kb >= b_end {
                break;
            }
            if !a.same_token(ka, b, kb) {
                return None;
            }
            differing.push((a.key_label(ka), ka + 1, kb + 1, stop));
            (ka, kb) = (a.end(ka + 1), b.end(kb + 1));
        }
        (ka >= a_end && kb >= b_end).then_some(differing)
    }

    fn keyed(&mut self, label: Label<'_>, ca: Option<usize>, cb: Option<usize>, hint: usize) {
        let Label::Key(key) = label else { return };
        self.path.push(Segment::Key(key.to_owned()));
        match (ca, cb) {
            (Some(ca), Some(cb)) => self.value(ca, cb, hint),
            (ca, cb) => self.push(ca, cb),
        }
        self.path.pop();
    }

    fn push(&mut self, ia: Option<usize>, ib: Option<usize>) {
        if self.found < self.limit {
            self.found += 1;
            (self.emit)(&self.path, ia, ib);
        }
    }
}

/// From `ca`, a child of the sequence at `seq` in `a`, the first child that does not end by
/// `stop`, and how many children were passed: by arithmetic where the children all span the
/// same number of tokens (a long array of equal-shaped values otherwise costs a step per
/// element before its first change), else child by child.
fn whole_children(a: &Flat, seq: usize, mut ca: usize, stop: usize) -> (usize, usize) {
    let mut passed = 0;
    if stop - ca > 64 {
        if let Some(stride) = a.stride(seq) {
            passed = (stop - ca) / stride;
            ca += passed * stride;
        }
    }
    while ca < stop && a.end(ca) <= stop {
        (ca, passed) = (a.end(ca), passed + 1);
    }
    (ca, passed)
}

/// Where the run of equal tokens from `ca` in `a` and `cb` in `b` ends (in `a`), the first
/// `known` of them being known equal already.
fn run_end(
    a: &Flat,
    ca: usize,
    a_end: usize,
    b: &Flat,
    cb: usize,
    b_end: usize,
    known: usize,
) -> usize {
    let known = known.min(a_end - ca).min(b_end - cb);
    ca + known + a.common_run(ca + known, a_end, b, cb + known, b_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| format!("{} {:?} {:?}", c.path, c.before, c.after))
            .collect()
    }

    #[test]
    fn names_changed_added_and_removed_values() {
        let before = json!({"fees": 1, "accounts": [{"balance": 5}, {"balance": 6}], "gone": true});
        let after = json!({"fees": 2, "accounts": [{"balance": 5}, {"balance": 9}, {"balance": 1}], "new": 0});
        let changes = diff(&Flat::of(&before), &Flat::of(&after), 100);
        assert_eq!(
            rendered(&changes),
            [
                r#"fees Some("1") Some("2")"#,
                r#"accounts[1].balance Some("6") Some("9")"#,
                r#"accounts[2] None Some("{ balance: 1 }")"#,
                r#"gone Some("true") None"#,
                r#"new None Some("0")"#,
            ]
        );
        assert_eq!(diff(&Flat::of(&before), &Flat::of(&after), 2).len(), 2);
        assert!(diff(&Flat::of(&after), &Flat::of(&after), 10).is_empty());
    }

    #[test]
    fn a_value_that_changes_shape_is_reported_whole() {
        let before = json!({"slot": [1, 2]});
        let after = json!({"slot": {"a": 1}});
        assert_eq!(
            rendered(&diff(&Flat::of(&before), &Flat::of(&after), 10)),
            [r#"slot Some("[1, 2]") Some("{ a: 1 }")"#]
        );
    }

    #[test]
    fn agrees_with_the_replayers_diff_on_which_paths_changed() {
        let before = json!({"a": [1, {"b": 2, "c": [3]}], "d": {"e": null}});
        let after = json!({"a": [1, {"b": 3, "c": [3, 4]}], "d": {"e": false}});
        let mut ours: Vec<String> = diff(&Flat::of(&before), &Flat::of(&after), 100)
            .iter()
            .map(|c| c.path.to_string())
            .collect();
        let mut theirs: Vec<String> = tree::diff(&before, &after, 100)
            .iter()
            .map(|c| c.path.to_string())
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn tree_diff_is_tree_diff() {
        let pairs = [
            (
                json!({"fees": 1, "accounts": [{"balance": 5}, {"balance": 6}], "gone": true}),
                json!({"fees": 2, "accounts": [{"balance": 5}, {"balance": 9}, {"balance": 1}], "new": 0}),
            ),
            (
                json!({"m": {"x": [1], "y": 2, "z": {"q": 1}}, "s": 1}),
                json!({"m": {"z": {"q": 2}, "x": 3, "w": [4]}, "s": {"now": "nested"}}),
            ),
            (json!([1, 2, 3]), json!([1, 5])),
            (json!({"a": 1}), json!({"a": 1})),
            (json!({"a": {}}), json!({"a": []})),
            (json!(1), json!("one")),
            (
                json!({"k": [{"a": 1, "b": [2]}]}),
                json!({"k": [{"a": 2, "b": [3]}]}),
            ),
        ];
        for (before, after) in &pairs {
            let ours = tree_diff(&Flat::of(before), &Flat::of(after), usize::MAX);
            assert_eq!(
                ours,
                tree::diff(before, after, usize::MAX),
                "{before} → {after}"
            );
            assert_eq!(
                tree_diff(&Flat::of(before), &Flat::of(after), 1),
                tree::diff(before, after, 1)
            );
        }
    }

    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            (0u64..3).prop_map(|n| json!(n)),
            Just(json!(-1)),
            Just(json!("s")),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::vec((0usize..4, inner), 0..4).prop_map(|fields| {
                    let mut map = serde_json::Map::new();
                    for (key, value) in fields {
                        map.insert(["a", "b", "c", "d"][key].to_owned(), value);
                    }
                    serde_json::Value::Object(map)
                }),
            ]
        })
    }

    /// A long array of equal-shaped records, some changed, some of another shape (which
    /// spoils the stride), some added or removed at the end.
    fn records() -> impl proptest::strategy::Strategy<Value = (serde_json::Value, serde_json::Value)>
    {
        use proptest::prelude::*;
        let record = |n: u64| json!({"balance": n, "operations": n % 3});
        (
            30usize..90,
            proptest::collection::vec((0usize..90, 0u64..4, 0u8..3), 0..6),
            -2isize..3,
        )
            .prop_map(move |(len, edits, grow)| {
                let before: Vec<_> = (0..len as u64).map(record).collect();
                let mut after = before.clone();
                for (at, n, how) in edits {
                    if let Some(slot) = after.get_mut(at) {
                        *slot = match how {
                            0 => record(n + 100),
                            1 => json!({"balance": n, "operations": n, "note": "x"}),
                            _ => json!([n]),
                        };
                    }
                }
                let len = after.len().saturating_add_signed(grow);
                after.resize(len, record(7));
                (
                    json!({"accounts": before, "fees": 1}),
                    json!({"accounts": after, "fees": 2}),
                )
            })
    }

    proptest::proptest! {
        #[test]
        fn long_arrays_diff_as_trees_do((before, after) in records()) {
            let (a, b) = (Flat::of(&before), Flat::of(&after));
            proptest::prop_assert_eq!(
                tree_diff(&a, &b, usize::MAX),
                tree::diff(&before, &after, usize::MAX)
            );
            proptest::prop_assert_eq!(
                tree_diff(&b, &a, usize::MAX),
                tree::diff(&after, &before, usize::MAX)
            );
            // Refilled against the state before, in the memory of another state.
            let a = std::sync::Arc::new(a);
            let mut c = Flat::of(&json!({"other": [1, 2, 3]}));
            c.refill_against(&after, &a);
            proptest::prop_assert_eq!(
                tree_diff(&a, &c, usize::MAX),
                tree::diff(&before, &after, usize::MAX)
            );
            proptest::prop_assert_eq!(
                tree_diff(&c, &a, usize::MAX),
                tree::diff(&after, &before, usize::MAX)
            );
        }

        #[test]
        fn structs_refilled_against_the_state_before_diff_as_trees_do(
            (before, after) in records()
        ) {
            // The same records as structs and tuples: named fields, no strings.
            #[derive(serde::Deserialize, serde::Serialize)]
            #[serde(untagged)]
            enum Record {
                Account { balance: u64, operations: u64 },
                Noted { balance: u64, operations: u64, note: String },
                Pair((u64,)),
            }
            #[derive(serde::Deserialize, serde::Serialize)]
            struct Ledger {
                accounts: Vec<Record>,
                fees: u64,
            }
            let typed = |v: &serde_json::Value| -> Ledger {
                serde_json::from_value(v.clone()).expect("records fit the types")
            };
            let a = std::sync::Arc::new(Flat::of(&typed(&before)));
            let mut b = Flat::default();
            b.refill_against(&typed(&after), &a);
            let trees = (tree::tree_of(&typed(&before)), tree::tree_of(&typed(&after)));
            proptest::prop_assert_eq!(
                tree_diff(&a, &b, usize::MAX),
                tree::diff(&trees.0, &trees.1, usize::MAX)
            );
            proptest::prop_assert_eq!(
                tree_diff(&b, &a, usize::MAX),
                tree::diff(&trees.1, &trees.0, usize::MAX)
            );
        }

        #[test]
        fn tree_diff_is_tree_diff_on_any_values(before in json(), after in json()) {
            let (a, b) = (Flat::of(&before), Flat::of(&after));
            proptest::prop_assert_eq!(
                tree_diff(&a, &b, usize::MAX),
                tree::diff(&before, &after, usize::MAX)
            );
            proptest::prop_assert_eq!(
                diff(&a, &b, usize::MAX).len(),
                tree::diff(&before, &after, usize::MAX).len()
            );
        }
    }
}
