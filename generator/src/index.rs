//! Which key a file goes to: the pure bookkeeping of one prefix's masters.
//!
//! Identity of "the same image" is its source name (the file name, or the name hint a
//! model server passes), recorded on every object as metadata `source-name`. A source
//! name's current master is its highest version. Its sha256 (metadata `sha256`)
//! decides unchanged (skip) or changed (new version, or overwrite in place). New
//! source names take the next free number after every number present in the prefix.

use std::collections::{BTreeSet, HashMap};

use crate::naming::MasterName;

/// A master already in the bucket, as listed and HEADed.
#[derive(Debug, Clone)]
pub struct Existing {
    pub name: MasterName,
    pub source_name: Option<String>,
    pub sha256: Option<String>,
    pub etag: String,
}

/// The current master of one source name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub name: MasterName,
    pub sha256: Option<String>,
    pub etag: String,
}

/// What to do with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The same bytes are already the source's current master.
    Skip { current: Current },
    /// A source name not seen before: the next free number.
    New { name: MasterName },
    /// Changed bytes, kept beside the old ones under the next version.
    Version { name: MasterName, previous: Current },
    /// Changed bytes replacing the current master in place (`--overwrite`).
    Overwrite { previous: Current },
}

impl Plan {
    /// The key name this plan writes (or, for a skip, the existing one).
    pub fn name(&self) -> MasterName {
        match self {
            Plan::Skip { current } | Plan::Overwrite { previous: current } => current.name,
            Plan::New { name } | Plan::Version { name, .. } => *name,
        }
    }

    /// Whether the key must not exist yet (written with `If-None-Match: *`).
    pub fn creates_key(&self) -> bool {
        matches!(self, Plan::New { .. } | Plan::Version { .. })
    }
}

/// The masters of one prefix and the keys reserved by uploads in flight.
#[derive(Debug, Default)]
pub struct PrefixIndex {
    taken: BTreeSet<MasterName>,
    current: HashMap<String, Current>,
}

impl PrefixIndex {
    pub fn new(existing: impl IntoIterator<Item = Existing>) -> PrefixIndex {
        let mut index = PrefixIndex::default();
        for e in existing {
            index.taken.insert(e.name);
            if let Some(source) = e.source_name {
                let candidate = Current {
                    name: e.name,
                    sha256: e.sha256,
                    etag: e.etag,
                };
                match index.current.get(&source) {
                    Some(held) if held.name >= candidate.name => {}
                    _ => {
                        index.current.insert(source, candidate);
                    }
                }
            }
        }
        index
    }

    /// Decides where `source` with content `sha256` goes and reserves that key, so
    /// concurrent uploads never pick the same one. Call [`PrefixIndex::done`] or
    /// [`PrefixIndex::failed`] afterwards.
    pub fn plan(&mut self, source: &str, sha256: &str, overwrite: bool) -> Plan {
        let plan = match self.current.get(source) {
            Some(current) if current.sha256.as_deref() == Some(sha256) => Plan::Skip {
                current: current.clone(),
            },
            Some(current) if overwrite => Plan::Overwrite {
                previous: current.clone(),
            },
            Some(current) => {
                let number = current.name.number;
                let version = (current.name.version + 1..)
                    .find(|&v| !self.taken.contains(&MasterName { number, version: v }))
                    .expect("versions are unbounded");
                Plan::Version {
                    name: MasterName { number, version },
                    previous: current.clone(),
                }
            }
            None => {
                let number = self.taken.iter().map(|n| n.number).max().unwrap_or(0) + 1;
                Plan::New {
                    name: MasterName { number, version: 1 },
                }
            }
        };
        if !matches!(plan, Plan::Skip { .. }) {
            self.taken.insert(plan.name());
            self.current.insert(
                source.to_string(),
                Current {
                    name: plan.name(),
                    sha256: Some(sha256.to_string()),
                    etag: String::new(),
                },
            );
        }
        plan
    }

    /// The planned write succeeded with this ETag.
    pub fn done(&mut self, source: &str, name: MasterName, etag: &str) {
        if let Some(current) = self.current.get_mut(source) {
            if current.name == name {
                current.etag = etag.to_string();
            }
        }
    }

    /// The planned write failed: the source's current master is what it was. A key
    /// that another writer took (`key_taken`) stays reserved so a re-plan skips it.
    pub fn failed(&mut self, source: &str, plan: &Plan, key_taken: bool) {
        if !key_taken && plan.creates_key() {
            self.taken.remove(&plan.name());
        }
        match plan {
            Plan::Skip { .. } => {}
            Plan::New { .. } => {
                self.current.remove(source);
            }
            Plan::Version { previous, .. } | Plan::Overwrite { previous } => {
                self.current.insert(source.to_string(), previous.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(number: u32, version: u32) -> MasterName {
        MasterName { number, version }
    }

    fn existing(number: u32, version: u32, source: Option<&str>, sha: &str) -> Existing {
        Existing {
            name: name(number, version),
            source_name: source.map(String::from),
            sha256: Some(sha.to_string()),
            etag: format!("etag-{number}-{version}"),
        }
    }

    #[test]
    fn new_sources_continue_after_the_highest_number_present() {
        let mut index = PrefixIndex::new([
            existing(1, 1, Some("a.png"), "aa"),
            existing(7, 1, None, "zz"),
            existing(3, 2, Some("c.png"), "cc"),
        ]);
        assert_eq!(
            index.plan("new.png", "n1", false),
            Plan::New { name: name(8, 1) }
        );
        assert_eq!(
            index.plan("new2.png", "n2", false),
            Plan::New { name: name(9, 1) }
        );
    }

    #[test]
    fn an_empty_prefix_starts_at_one() {
        let mut index = PrefixIndex::new([]);
        assert_eq!(
            index.plan("x.png", "1", false),
            Plan::New { name: name(1, 1) }
        );
    }

    #[test]
    fn same_bytes_under_the_same_source_name_are_skipped() {
        let mut index = PrefixIndex::new([existing(1, 1, Some("a.png"), "aa")]);
        let plan = index.plan("a.png", "aa", false);
        assert_eq!(
            plan,
            Plan::Skip {
                current: Current {
                    name: name(1, 1),
                    sha256: Some("aa".into()),
                    etag: "etag-1-1".into()
                }
            }
        );
        assert_eq!(index.plan("a.png", "aa", true).name(), name(1, 1));
    }

    #[test]
    fn changed_bytes_get_the_next_version_of_the_latest() {
        let mut index = PrefixIndex::new([
            existing(1, 1, Some("a.png"), "old"),
            existing(1, 2, Some("a.png"), "newer"),
        ]);
        // The current master is v2: v2's bytes are unchanged, v1's bytes are a change.
        assert!(matches!(
            index.plan("a.png", "newer", false),
            Plan::Skip { .. }
        ));
        let plan = index.plan("a.png", "third", false);
        assert_eq!(plan.name(), name(1, 3));
        assert!(plan.creates_key());
        // Now v3 is current: the same bytes again are skipped.
        assert!(matches!(
            index.plan("a.png", "third", false),
            Plan::Skip { .. }
        ));
    }

    #[test]
    fn versions_skip_keys_taken_by_others() {
        let mut index = PrefixIndex::new([
            existing(1, 1, Some("a.png"), "old"),
            existing(1, 2, None, "??"),
        ]);
        assert_eq!(index.plan("a.png", "new", false).name(), name(1, 3));
    }

    #[test]
    fn overwrite_replaces_the_current_key_in_place() {
        let mut index = PrefixIndex::new([
            existing(4, 2, Some("a.png"), "old"),
            existing(4, 1, Some("a.png"), "older"),
        ]);
        let plan = index.plan("a.png", "new", true);
        assert_eq!(
            plan,
            Plan::Overwrite {
                previous: Current {
                    name: name(4, 2),
                    sha256: Some("old".into()),
                    etag: "etag-4-2".into()
                }
            }
        );
        assert!(!plan.creates_key());
    }

    #[test]
    fn objects_without_a_sha_are_changed_not_skipped() {
        let mut index = PrefixIndex::new([Existing {
            name: name(1, 1),
            source_name: Some("a.png".into()),
            sha256: None,
            etag: "e".into(),
        }]);
        assert_eq!(index.plan("a.png", "x", false).name(), name(1, 2));
    }

    #[test]
    fn concurrent_plans_reserve_distinct_keys() {
        let mut index = PrefixIndex::new([]);
        let names: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|s| index.plan(s, s, false).name())
            .collect();
        assert_eq!(names, [name(1, 1), name(2, 1), name(3, 1)]);
    }

    #[test]
    fn a_failed_new_upload_frees_its_number_and_forgets_the_source() {
        let mut index = PrefixIndex::new([]);
        let plan = index.plan("a.png", "aa", false);
        index.failed("a.png", &plan, false);
        assert_eq!(
            index.plan("a.png", "aa", false),
            Plan::New { name: name(1, 1) }
        );
    }

    #[test]
    fn a_key_taken_by_another_writer_stays_reserved() {
        let mut index = PrefixIndex::new([]);
        let plan = index.plan("a.png", "aa", false);
        index.failed("a.png", &plan, true);
        assert_eq!(
            index.plan("a.png", "aa", false),
            Plan::New { name: name(2, 1) }
        );
    }

    #[test]
    fn a_failed_version_restores_the_previous_current() {
        let mut index = PrefixIndex::new([existing(1, 1, Some("a.png"), "old")]);
        let plan = index.plan("a.png", "new", false);
        index.failed("a.png", &plan, false);
        assert!(matches!(
            index.plan("a.png", "old", false),
            Plan::Skip { .. }
        ));
        assert_eq!(index.plan("a.png", "new", false).name(), name(1, 2));
    }

    #[test]
    fn done_records_the_new_etag() {
        let mut index = PrefixIndex::new([]);
        let plan = index.plan("a.png", "aa", false);
        index.done("a.png", plan.name(), "\"abc\"");
        match index.plan("a.png", "aa", false) {
            Plan::Skip { current } => assert_eq!(current.etag, "\"abc\""),
            other => panic!("{other:?}"),
        }
    }
}
