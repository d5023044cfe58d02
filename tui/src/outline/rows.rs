//! The rows of the state tree as the user folded it, for one window of the screen.

use std::collections::HashMap;

use flightrec_replayer::tree::{Path, Segment};

use flightrec_replayer::outline::{Flat, Label};

/// Which containers are unfolded, as a tree of paths. The root is always unfolded.
#[derive(Clone, Debug, Default)]
pub struct Expanded {
    children: HashMap<Segment, Expanded>,
}

impl Expanded {
    /// Unfolds `path` if folded, folds it (and forgets what was unfolded inside) if not.
    pub fn toggle(&mut self, path: &[Segment]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut node = self;
        for segment in parents {
            node = node.children.entry(segment.clone()).or_default();
        }
        if node.children.remove(last).is_none() {
            node.children.insert(last.clone(), Expanded::default());
        }
    }

    /// Unfolds `path` and every container above it.
    pub fn open(&mut self, path: &[Segment]) {
        let mut node = self;
        for segment in path {
            node = node.children.entry(segment.clone()).or_default();
        }
    }

    /// Whether `path` is unfolded.
    pub fn is_open(&self, path: &[Segment]) -> bool {
        let mut node = self;
        for segment in path {
            match node.children.get(segment) {
                Some(child) => node = child,
                None => return false,
            }
        }
        true
    }
}

/// One row of the tree: a value at `path`, `depth` levels in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Where the value sits.
    pub path: Path,
    /// Indentation level (0: a field of the root).
    pub depth: usize,
    /// Its token in the [`Flat`].
    pub node: usize,
    /// Whether it is an unfolded container.
    pub open: bool,
}

/// The rows of one window, and how many rows the whole tree has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Rows `from..from + count` (fewer at the end).
    pub rows: Vec<Row>,
    /// Rows in all.
    pub total: usize,
}

/// The rows `from..from + count` of `flat` folded as `expanded`. Costs one step per row above
/// the window (a folded subtree is skipped in one step) and a path per row inside it.
pub fn window(flat: &Flat, expanded: &Expanded, from: usize, count: usize) -> Window {
    let mut walk = Walk {
        flat,
        range: from..from.saturating_add(count),
        path: Vec::new(),
        row: 0,
        out: Vec::new(),
    };
    if flat.is_empty() {
        return Window::default();
    }
    if flat.container(Flat::ROOT).is_some() {
        walk.children(Flat::ROOT, expanded, 0);
    } else {
        walk.visit(Flat::ROOT, 0, false);
    }
    Window {
        rows: walk.out,
        total: walk.row,
    }
}

struct Walk<'f> {
    flat: &'f Flat,
    range: std::ops::Range<usize>,
    path: Vec<Segment>,
    row: usize,
    out: Vec<Row>,
}

impl Walk<'_> {
    fn children(&mut self, node: usize, expanded: &Expanded, depth: usize) {
        // Most containers have nothing unfolded inside: then no child needs a lookup.
        let unfolded = (!expanded.children.is_empty()).then_some(expanded);
        for (label, child) in self.flat.children(node) {
            let segment = || match label {
                Label::Index(i) => Segment::Index(i),
                Label::Key(key) => Segment::Key(key.to_owned()),
            };
            let inner = match unfolded {
                Some(expanded) if self.flat.container(child).is_some() => {
                    expanded.children.get(&segment())
                }
                _ => None,
            };
            if self.range.contains(&self.row) || inner.is_some() {
                self.path.push(segment());
                self.visit(child, depth, inner.is_some());
                if let Some(inner) = inner {
                    self.children(child, inner, depth + 1);
                }
                self.path.pop();
            } else {
                self.row += 1;
            }
        }
    }

    fn visit(&mut self, node: usize, depth: usize, open: bool) {
        if self.range.contains(&self.row) {
            self.out.push(Row {
                path: Path(self.path.clone()),
                depth,
                node,
                open,
            });
        }
        self.row += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(flat: &Flat, expanded: &Expanded, from: usize, count: usize) -> Vec<String> {
        window(flat, expanded, from, count)
            .rows
            .iter()
            .map(|row| {
                let mark = if row.open { "-" } else { " " };
                format!("{}{mark}{}", "  ".repeat(row.depth), row.path)
            })
            .collect()
    }

    #[test]
    fn folded_containers_take_one_row_and_unfolded_ones_list_their_children() {
        let flat = Flat::of(&json!({"a": [1, 2, {"x": 1}], "b": {"c": true}, "d": 4}));
        let mut expanded = Expanded::default();
        assert_eq!(lines(&flat, &expanded, 0, 10), [" a", " b", " d"]);
        expanded.toggle(&Path::parse("a").unwrap().0);
        expanded.toggle(&Path::parse("a[2]").unwrap().0);
        assert_eq!(
            lines(&flat, &expanded, 0, 10),
            [
                "-a",
                "   a[0]",
                "   a[1]",
                "  -a[2]",
                "     a[2].x",
                " b",
                " d"
            ]
        );
        assert_eq!(window(&flat, &expanded, 0, 10).total, 7);
        assert_eq!(lines(&flat, &expanded, 3, 2), ["  -a[2]", "     a[2].x"]);
        assert_eq!(lines(&flat, &expanded, 6, 5), [" d"]);
        assert!(expanded.is_open(&Path::parse("a[2]").unwrap().0));
        // Folding forgets what was unfolded inside.
        expanded.toggle(&Path::parse("a").unwrap().0);
        assert!(!expanded.is_open(&Path::parse("a[2]").unwrap().0));
        assert_eq!(window(&flat, &expanded, 0, 10).total, 3);
    }

    #[test]
    fn a_scalar_root_is_one_row() {
        let flat = Flat::of(&7u8);
        let rows = window(&flat, &Expanded::default(), 0, 5);
        assert_eq!(rows.total, 1);
        assert_eq!(rows.rows[0].path, Path::root());
    }
}
