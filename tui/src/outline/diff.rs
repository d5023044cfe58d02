//! What changed between two states, leaf by leaf, in one walk over both token arrays.

use std::collections::HashMap;

use flightrec_replayer::tree::{Path, Segment};

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

/// The values that differ between `before` and `after`, at most `limit`, in tree order. Scalars
/// are compared; a container whose shape changed is reported whole.
pub fn diff(before: &Flat, after: &Flat, limit: usize) -> Vec<Change> {
    let mut walk = Walk {
        a: before,
        b: after,
        path: Vec::new(),
        out: Vec::new(),
        limit,
    };
    if !before.is_empty() && !after.is_empty() {
        walk.value(Flat::ROOT, Flat::ROOT);
    }
    walk.out
}

struct Walk<'f> {
    a: &'f Flat,
    b: &'f Flat,
    path: Vec<Segment>,
    out: Vec<Change>,
    limit: usize,
}

impl Walk<'_> {
    fn value(&mut self, ia: usize, ib: usize) {
        // Comparing tokens is far cheaper than walking labels and paths: most of a state is
        // unchanged, and each unchanged subtree is dismissed here in one tight loop.
        if self.out.len() >= self.limit || self.a.same(ia, self.b, ib) {
            return;
        }
        match (self.a.container(ia), self.b.container(ib)) {
            (Some((Kind::Seq, _)), Some((Kind::Seq, _))) => self.seq(ia, ib),
            (Some((Kind::Map, _)), Some((Kind::Map, _))) => self.map(ia, ib),
            _ => self.push(Some(ia), Some(ib)),
        }
    }

    fn seq(&mut self, ia: usize, ib: usize) {
        let mut left = self.a.children(ia);
        let mut right = self.b.children(ib);
        for index in 0.. {
            let (ca, cb) = (left.next(), right.next());
            if ca.is_none() && cb.is_none() {
                break;
            }
            self.path.push(Segment::Index(index));
            match (ca, cb) {
                (Some((_, ca)), Some((_, cb))) => self.value(ca, cb),
                (ca, cb) => self.push(ca.map(|c| c.1), cb.map(|c| c.1)),
            }
            self.path.pop();
        }
    }

    fn map(&mut self, ia: usize, ib: usize) {
        let same_keys = self
            .a
            .children(ia)
            .map(|c| c.0)
            .eq(self.b.children(ib).map(|c| c.0));
        if same_keys {
            // Structs, and maps that kept their keys: pair children in order.
            for ((label, ca), (_, cb)) in self.a.children(ia).zip(self.b.children(ib)) {
                self.keyed(label, Some(ca), Some(cb));
            }
            return;
        }
        let after: HashMap<Label<'_>, usize> = self.b.children(ib).collect();
        for (label, ca) in self.a.children(ia) {
            self.keyed(label, Some(ca), after.get(&label).copied());
        }
        let before: HashMap<Label<'_>, usize> = self.a.children(ia).collect();
        for (label, cb) in self.b.children(ib) {
            if !before.contains_key(&label) {
                self.keyed(label, None, Some(cb));
            }
        }
    }

    fn keyed(&mut self, label: Label<'_>, ca: Option<usize>, cb: Option<usize>) {
        let Label::Key(key) = label else { return };
        self.path.push(Segment::Key(key.to_owned()));
        match (ca, cb) {
            (Some(ca), Some(cb)) => self.value(ca, cb),
            (ca, cb) => self.push(ca, cb),
        }
        self.path.pop();
    }

    fn push(&mut self, ia: Option<usize>, ib: Option<usize>) {
        if self.out.len() < self.limit {
            self.out.push(Change {
                path: Path(self.path.clone()),
                before: ia.map(|i| self.a.preview_string(i, PREVIEW)),
                after: ib.map(|i| self.b.preview_string(i, PREVIEW)),
            });
        }
    }
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
        use flightrec_replayer::tree;
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
}
