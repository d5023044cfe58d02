//! The recorded part of the store: every write goes through [`KvStore::apply`], so replaying
//! the recorded writes rebuilds the store exactly. Reads change nothing and are not recorded.

use std::collections::BTreeMap;

use flightrec_recorder::{Machine, Tick};
use serde::{Deserialize, Serialize};

/// A write, as recorded in the ring file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// Store `value` under `key`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove `key`.
    Del {
        /// The key.
        key: String,
    },
    /// Add one to the integer stored under `key` (a missing key counts as 0).
    Incr {
        /// The key.
        key: String,
    },
}

impl Write {
    /// The key it writes.
    pub fn key(&self) -> &str {
        match self {
            Write::Set { key, .. } | Write::Del { key } | Write::Incr { key } => key,
        }
    }
}

/// The store's state. A `BTreeMap`, not a `HashMap`: its encoding must not depend on a random
/// seed, or a replayed state would never hash like the recorded one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    /// Values by key.
    pub entries: BTreeMap<String, String>,
    /// Writes applied, refused ones included.
    pub writes: u64,
    /// INCRs refused because the value was not an integer.
    pub refused: u64,
    /// When the last write was applied, Unix ns: from the recorded tick, never the clock.
    pub last_write_unix_ns: u64,
}

impl KvStore {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The value under `key` as an integer; a missing key is 0, a non-integer `None`.
    pub fn integer(&self, key: &str) -> Option<i64> {
        self.get(key).map_or(Some(0), |value| value.parse().ok())
    }

    fn incr(&mut self, key: &str) {
        let Some(current) = self.integer(key) else {
            self.refused += 1;
            return;
        };
        // The latent bug: counters were thought to start at 0 and grow by one, so overflow was
        // deemed unreachable. But SET can store any integer, and INCR of i64::MAX ends here.
        let next = current.checked_add(1).expect("counter overflow");
        self.entries.insert(key.to_owned(), next.to_string());
    }
}

impl Machine for KvStore {
    const NAME: &'static str = "kvstore";
    const VERSION: u32 = 1;
    type Input = Write;

    fn apply(&mut self, write: &Write, tick: Tick) {
        self.writes += 1;
        self.last_write_unix_ns = tick.unix_ns;
        match write {
            Write::Set { key, value } => {
                self.entries.insert(key.clone(), value.clone());
            }
            Write::Del { key } => {
                self.entries.remove(key);
            }
            Write::Incr { key } => self.incr(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(store: &mut KvStore, write: Write) {
        let seq = store.writes;
        store.apply(&write, Tick { seq, unix_ns: seq });
    }

    fn incr(key: &str) -> Write {
        Write::Incr { key: key.into() }
    }

    #[test]
    fn incr_counts_from_zero_and_refuses_text() {
        let mut store = KvStore::default();
        apply(&mut store, incr("hits"));
        apply(&mut store, incr("hits"));
        assert_eq!(store.get("hits"), Some("2"));
        let (key, value) = ("name".to_owned(), "ada".to_owned());
        apply(&mut store, Write::Set { key, value });
        apply(&mut store, incr("name"));
        assert_eq!((store.get("name"), store.refused), (Some("ada"), 1));
        apply(&mut store, Write::Del { key: "hits".into() });
        assert_eq!(store.get("hits"), None);
        assert_eq!(store.writes, 5);
    }

    #[test]
    #[should_panic(expected = "counter overflow")]
    fn incr_of_the_largest_integer_panics() {
        let mut store = KvStore::default();
        let value = i64::MAX.to_string();
        apply(
            &mut store,
            Write::Set {
                key: "n".into(),
                value,
            },
        );
        apply(&mut store, incr("n"));
    }
}
