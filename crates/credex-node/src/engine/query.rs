//! Reads: the mutually recognised view (lookup and list), audit proofs, and the origin and
//! quarantine parts of the status.
//!
//! The view is computed on read from the logs through `credex_core::view` — the pure
//! function of (accepted entries, policy, date) — so it can never drift from the logs, and
//! expiry needs no background job: a record leaves the view the day after its `ends_on`.
//!
//! The view is bitemporal. *Valid time* (`as_of`, a date): each record is evaluated from its
//! whole version history (the store's version index), every status from its own
//! `effective_on`. *Transaction time* (`as_known_at`, Unix ms): only versions whose
//! `Entry.logged_at` is at or before it count, so the answer is what the view showed then
//! from what had been logged.

use credex_core::date::{self, Date};
use credex_core::entry;
use credex_core::ident;
use credex_core::merkle;
use credex_core::pb;
use credex_core::view::{self, RecordVersion, SubjectView};
use credex_store::RecordLocation;
use prost::Message;
use std::sync::Arc;

use super::{Engine, EngineError};

/// The transaction-time bound of a request: `as_known_at` Unix ms, 0 for now (no bound).
fn known_at(as_known_at: i64) -> Result<Option<i64>, EngineError> {
    match as_known_at {
        0 => Ok(None),
        t if t < 0 => Err(EngineError::InvalidArgument(format!(
            "as_known_at: {t} is not a Unix time in milliseconds"
        ))),
        t => Ok(Some(t)),
    }
}

impl Engine {
    /// The transaction time of a request: `as_known_at` (Unix ms), or when `size` is set the
    /// time `origin`'s log of that size was logged (`Engine::logged_through`; `origin` empty:
    /// this city), or 0 (now). The entries in the view go forward in time, so a checkpoint of
    /// size n covers exactly the entries logged up to that time.
    pub fn known_at(&self, as_known_at: i64, origin: &str, size: u64) -> Result<i64, EngineError> {
        if size == 0 {
            if !origin.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "as_known_at_origin: given without as_known_at_size".into(),
                ));
            }
            return Ok(as_known_at);
        }
        if as_known_at != 0 {
            return Err(EngineError::InvalidArgument(
                "as_known_at_size: give either as_known_at or as_known_at_size, not both".into(),
            ));
        }
        let origin = if origin.is_empty() {
            self.city.as_str()
        } else {
            origin
        };
        let member = self.member(origin).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "as_known_at_origin: {origin:?} is not a member of the consortium"
            ))
        })?;
        let held = self.store.origin_state(origin).size;
        if size > held {
            return Err(EngineError::InvalidArgument(format!(
                "as_known_at_size: {size} is beyond {origin}'s log as this node holds it ({held} entries)"
            )));
        }
        let logged = self.logged_through(member, size).map_err(|e| match e {
            EngineError::FailedPrecondition(m) => {
                EngineError::FailedPrecondition(format!("as_known_at_size: {m}"))
            }
            e => e,
        })?;
        // Nothing below `size` in the view: before anything was logged.
        Ok(logged.unwrap_or(0).max(1))
    }

    /// When `member`'s log below `end` was logged as the view counts it: the `logged_at` of
    /// the last entry before `end` not listed invalid, the latest of the entries the view takes
    /// (they go forward in time, `index::CheckedLeaf::refuse_logged_before`); `None` if there
    /// is none. An entry past the indexed mark, not judged yet, counts if its signature holds;
    /// one below it was verified when it was indexed.
    pub(crate) fn logged_through(
        &self,
        member: &super::Member,
        end: u64,
    ) -> Result<Option<i64>, EngineError> {
        let origin = member.city.as_str();
        let judged = self.store.indexed(origin);
        for seq in (0..end).rev() {
            if self.store.invalid(origin, seq)?.is_some() {
                continue;
            }
            let leaf = self.store.leaf(origin, seq)?.ok_or_else(|| {
                EngineError::Internal(format!("store: {origin} seq {seq} has no leaf"))
            })?;
            let logged_at = if seq < judged {
                entry::parse_leaf(&leaf)
                    .ok()
                    .and_then(|parts| pb::Entry::decode(parts.entry).ok())
                    .map(|e| e.logged_at)
                    .ok_or_else(|| {
                        EngineError::Internal(format!(
                            "store: {origin} seq {seq} is indexed valid but does not decode"
                        ))
                    })?
            } else {
                entry::verify_entry(&leaf, &member.log_key)
                    .map_err(|e| {
                        EngineError::FailedPrecondition(format!(
                            "{origin}'s entry {seq} is invalid, so its time is unknown: {e}"
                        ))
                    })?
                    .entry
                    .logged_at
            };
            return Ok(Some(logged_at));
        }
        Ok(None)
    }
}

/// Most records one List or Lookup page returns.
pub const MAX_PAGE: usize = 1000;
/// Most bytes of records (encoded) one List or Lookup page holds, besides its first record: with
/// the rest of the response it stays far below the 4 MiB a stock gRPC client accepts, while a
/// single record is bounded by the schema's text limits (well under 100 KiB).
pub const MAX_PAGE_BYTES: usize = 2 << 20;
/// Most records one List call examines. A filter that matches few records would otherwise scan
/// the whole index for one page; past this many the call answers what it found, possibly
/// nothing, with a token to go on from the last record examined. At a million records that
/// bounds a call to a hundredth of the index, tens of milliseconds.
pub const MAX_LIST_SCAN: usize = 10_000;
/// Most invalid entries one ListInvalid page returns.
pub const MAX_INVALID_PAGE: usize = 1000;
/// Most entries one GetEntries call returns.
pub const MAX_ENTRIES_PAGE: usize = 10_000;

/// One page of a subject's view on a date.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The normalised identifier looked up (full: the caller gave it).
    pub subject: String,
    /// The same, masked if it may be a resident ID number.
    pub subject_masked: String,
    /// This page's records: in force first, then excluded, each in (origin, record_id) order.
    pub view: SubjectView,
    pub as_of: Date,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// One entry listed invalid: appended under its origin's signed root, kept out of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    pub origin: String,
    pub seq: u64,
    pub record_id: String,
    pub version: u32,
    pub reason: String,
}

/// One page of Operator.ListInvalid.
#[derive(Debug, Clone)]
pub struct InvalidPage {
    pub entries: Vec<InvalidEntry>,
    /// `<origin>/<seq>` of the next entry to list; empty on the last page.
    pub next_page_token: String,
}

/// Where a Lookup page resumes: after (origin, record_id) in the in-force part (`f`) or the
/// excluded part (`x`).
fn parse_lookup_token(token: &str) -> Result<Option<(bool, String, String)>, EngineError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        EngineError::InvalidArgument(format!(
            "page_token: {token:?} is not a token this node issued"
        ))
    };
    let (part, rest) = token.split_once('/').ok_or_else(bad)?;
    let (origin, record_id) = rest.split_once('/').ok_or_else(bad)?;
    let excluded = match part {
        "f" => false,
        "x" => true,
        _ => return Err(bad()),
    };
    Ok(Some((excluded, origin.to_owned(), record_id.to_owned())))
}

/// Filters of View.List.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub origin: Option<String>,
    pub list: Option<pb::ListKind>,
    pub category: Option<String>,
}

/// What bounds one List page besides its record count.
#[derive(Debug, Clone, Copy)]
pub struct PageBounds {
    /// Bytes of records (encoded), past the first record.
    pub bytes: usize,
    /// Records examined.
    pub scan: usize,
}

impl Default for PageBounds {
    fn default() -> Self {
        PageBounds {
            bytes: MAX_PAGE_BYTES,
            scan: MAX_LIST_SCAN,
        }
    }
}

/// One page of View.List.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub records: Vec<view::InForce>,
    pub next_page_token: String,
}

/// Per-origin figures of the status.
#[derive(Debug, Clone)]
pub struct OriginFigures {
    pub origin: String,
    pub local_size: u64,
    /// Entries of the local log in the view (the rest wait for their signatures' check).
    pub indexed_size: u64,
    pub best_seen_size: u64,
    pub checkpoint_size: u64,
    pub checkpoint_age_ms: i64,
    pub cosignatures: u32,
    /// The newest checkpoint's size if it is published (two cosignatures), else 0.
    pub published_size: u64,
    /// The newest checkpoint's size if it is final (every other member cosigned), else 0.
    pub final_size: u64,
    pub forked: bool,
}

impl Engine {
    /// The date a request asks about: `as_of` if given, else the view's today
    /// ([`Engine::view_today`]).
    pub fn as_of(&self, as_of: &str) -> Result<Date, EngineError> {
        if as_of.is_empty() {
            return Ok(self.view_today());
        }
        date::parse_date(as_of).map_err(|e| EngineError::InvalidArgument(format!("as_of: {e}")))
    }

    /// Whether a USCC in `record` (subject or authority) is on the consortium's legacy
    /// allow-list, so that it is accepted only through it and flagged.
    pub fn legacy_code(&self, record: &pb::CreditRecord) -> bool {
        let allow = &self.rules.legacy_uscc_allow_list;
        !allow.is_empty()
            && (record
                .subject
                .as_ref()
                .is_some_and(|s| allow.contains(&s.uscc))
                || record
                    .authority
                    .as_ref()
                    .is_some_and(|a| allow.contains(&a.uscc)))
    }

    /// Every record about one subject, in force or not and why, on `as_of` (empty: today) as
    /// known at `as_known_at` (Unix ms; 0: now): all of them on one page.
    pub fn lookup(
        &self,
        subject_id: &str,
        as_of: &str,
        as_known_at: i64,
    ) -> Result<Lookup, EngineError> {
        self.lookup_page(subject_id, as_of, as_known_at, usize::MAX, usize::MAX, "")
    }

    /// One page of [`Engine::lookup`]: at most `page_size` records (in force, then excluded)
    /// and, past the first, at most `max_bytes` of them encoded. Any identifier with the shape
    /// of a USCC or ID number is looked up, whatever its check character: the answer is what
    /// the view holds (`ident::lookup_key`).
    pub fn lookup_page(
        &self,
        subject_id: &str,
        as_of: &str,
        as_known_at: i64,
        page_size: usize,
        max_bytes: usize,
        page_token: &str,
    ) -> Result<Lookup, EngineError> {
        let subject = ident::lookup_key(subject_id)
            .map_err(|e| EngineError::InvalidArgument(format!("subject_id: {e}")))?;
        let after = parse_lookup_token(page_token)?;
        let as_of = self.as_of(as_of)?;
        let known_at = known_at(as_known_at)?;
        let mut versions = Vec::new();
        for hit in self.store.subject(subject.as_str())? {
            let newest = self.store.checkpoint(&hit.origin)?.map_or(0, |c| c.size);
            let location = RecordLocation {
                version: hit.version,
                seq: hit.seq,
            };
            versions.extend(self.record_history(
                &hit.origin,
                &hit.record_id,
                location,
                newest,
                known_at,
            )?);
        }
        let full = view::subject_view(&versions, &self.policy, as_of);
        let mut page = SubjectView::default();
        let (mut bytes, mut next_page_token) = (0, String::new());
        let past = |excluded: bool, v: &RecordVersion| match &after {
            None => true,
            Some((x, origin, id)) => {
                (excluded && !*x)
                    || (excluded == *x
                        && (v.origin.as_str(), v.record.record_id.as_str())
                            > (origin.as_str(), id.as_str()))
            }
        };
        let full_page = |count: usize, bytes: usize, more: usize| {
            count > 0 && (count >= page_size || bytes + more > max_bytes)
        };
        let token = |x: &str, v: &RecordVersion| format!("{x}/{}/{}", v.origin, v.record.record_id);
        let mut last: Option<String> = None;
        'page: {
            for r in full
                .in_force
                .into_iter()
                .filter(|r| past(false, &r.version))
            {
                let size = r.to_pb().encoded_len();
                if full_page(page.in_force.len(), bytes, size) {
                    next_page_token = last.take().unwrap_or_default();
                    break 'page;
                }
                bytes += size;
                last = Some(token("f", &r.version));
                page.in_force.push(r);
            }
            for r in full.excluded.into_iter().filter(|r| past(true, &r.version)) {
                let size = r.to_pb().encoded_len();
                let count = page.in_force.len() + page.excluded.len();
                if full_page(count, bytes, size) {
                    next_page_token = last.take().unwrap_or_default();
                    break 'page;
                }
                bytes += size;
                last = Some(token("x", &r.version));
                page.excluded.push(r);
            }
        }
        let subject_masked = ident::masked_key(&subject);
        Ok(Lookup {
            subject,
            subject_masked,
            view: page,
            as_of,
            next_page_token,
        })
    }

    /// Entries listed invalid, in (origin, seq) order from `page_token` (`<origin>/<seq>`),
    /// at most `page_size` (0: 100; capped at [`MAX_INVALID_PAGE`]).
    pub fn list_invalid(
        &self,
        origin: Option<&str>,
        page_size: usize,
        page_token: &str,
    ) -> Result<InvalidPage, EngineError> {
        if let Some(o) = origin {
            self.known_origin(o)?;
        }
        let page_size = match page_size {
            0 => 100,
            n => n.min(MAX_INVALID_PAGE),
        };
        let (from_origin, from_seq) = match page_token.split_once('/') {
            None if page_token.is_empty() => (String::new(), 0),
            Some((o, seq)) if self.member(o).is_some() => match seq.parse::<u64>() {
                Ok(seq) => (o.to_owned(), seq),
                Err(_) => (String::new(), u64::MAX),
            },
            _ => (String::new(), u64::MAX),
        };
        if from_seq == u64::MAX {
            return Err(EngineError::InvalidArgument(format!(
                "page_token: {page_token:?} is not a token this node issued"
            )));
        }
        let mut origins: Vec<String> = self.members().map(|m| m.city.clone()).collect();
        origins.sort();
        let mut entries = Vec::new();
        for o in origins {
            if origin.is_some_and(|want| want != o) || o < from_origin {
                continue;
            }
            let start = if o == from_origin { from_seq } else { 0 };
            // One more than the page holds, to know whether another page follows.
            let found = self
                .store
                .invalid_entries(&o, start, page_size + 1 - entries.len())?;
            for (seq, reason) in found {
                if entries.len() == page_size {
                    return Ok(InvalidPage {
                        entries,
                        next_page_token: format!("{o}/{seq}"),
                    });
                }
                let (record_id, version) = match self.store.leaf(&o, seq)? {
                    Some(leaf) => entry::parse_leaf(&leaf)
                        .ok()
                        .and_then(|p| pb::Entry::decode(p.entry).ok())
                        .and_then(|e| e.record)
                        .map(|r| (r.record_id, r.version))
                        .unwrap_or_default(),
                    None => Default::default(),
                };
                entries.push(InvalidEntry {
                    origin: o.clone(),
                    seq,
                    record_id,
                    version,
                    reason,
                });
            }
        }
        Ok(InvalidPage {
            entries,
            next_page_token: String::new(),
        })
    }

    /// Records in force, filtered, in (origin, record_id) order, one page at a time. The page
    /// token is `<origin>/<record_id>` of the last record returned.
    pub fn list(
        &self,
        filter: &ListFilter,
        page_size: usize,
        page_token: &str,
        as_of: &str,
        as_known_at: i64,
    ) -> Result<ListPage, EngineError> {
        self.list_bounded(
            filter,
            page_size,
            PageBounds::default(),
            page_token,
            as_of,
            as_known_at,
        )
    }

    /// [`Engine::list`] within `bounds`.
    pub fn list_bounded(
        &self,
        filter: &ListFilter,
        page_size: usize,
        bounds: PageBounds,
        page_token: &str,
        as_of: &str,
        as_known_at: i64,
    ) -> Result<ListPage, EngineError> {
        // An origin outside the consortium can hold nothing: a typo, said so rather than an
        // empty page. (A category this node's catalogue lacks may still be a peer's newer
        // code, listed with the unknown_category flag, so it is not refused here.)
        if let Some(origin) = &filter.origin {
            self.known_origin(origin)?;
        }
        let as_of = self.as_of(as_of)?;
        let known_at = known_at(as_known_at)?;
        let page_size = match page_size {
            0 => 100,
            n => n.min(MAX_PAGE),
        };
        let (mut origin_after, mut id_after) = match page_token.split_once('/') {
            Some((o, id)) if self.member(o).is_some() => (o.to_owned(), Some(id.to_owned())),
            None if page_token.is_empty() => (String::new(), None),
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "page_token: {page_token:?} is not a token this node issued"
                )));
            }
        };
        let mut origins: Vec<String> = self.members().map(|m| m.city.clone()).collect();
        origins.sort();
        let mut records = Vec::new();
        let mut bytes = 0;
        let mut last_token = String::new();
        let mut examined = 0;
        for origin in origins {
            if filter.origin.as_ref().is_some_and(|o| *o != origin) || origin < origin_after {
                continue;
            }
            if origin != origin_after {
                origin_after = origin.clone();
                id_after = None;
            }
            let newest = self.store.checkpoint(&origin)?.map_or(0, |c| c.size);
            loop {
                let chunk = self.store.records(&origin, id_after.as_deref(), 512)?;
                if chunk.is_empty() {
                    break;
                }
                for (record_id, loc) in &chunk {
                    if examined == bounds.scan {
                        // The scan budget: what was found, and where to go on (`origin/` is
                        // the start of that origin's records).
                        return Ok(ListPage {
                            records,
                            next_page_token: format!(
                                "{origin}/{}",
                                id_after.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                    examined += 1;
                    id_after = Some(record_id.clone());
                    let history =
                        self.record_history(&origin, record_id, *loc, newest, known_at)?;
                    let refs: Vec<&RecordVersion> = history.iter().collect();
                    let Some(Ok(in_force)) = view::evaluate_record(&refs, &self.policy, as_of)
                    else {
                        continue;
                    };
                    let record = &in_force.version.record;
                    if filter.list.is_some_and(|l| record.list != l as i32)
                        || filter
                            .category
                            .as_ref()
                            .is_some_and(|c| *c != record.category)
                    {
                        continue;
                    }
                    let size = in_force.to_pb().encoded_len();
                    if !records.is_empty() && bytes + size > bounds.bytes {
                        return Ok(ListPage {
                            records,
                            next_page_token: last_token,
                        });
                    }
                    bytes += size;
                    last_token = format!("{origin}/{record_id}");
                    records.push(in_force);
                    if records.len() == page_size {
                        return Ok(ListPage {
                            records,
                            next_page_token: last_token,
                        });
                    }
                }
            }
        }
        Ok(ListPage {
            records,
            next_page_token: String::new(),
        })
    }

    /// Every version of one record logged by `known_at` (all if `None`), oldest first, as the
    /// view sees them. `latest` is the record index's entry: a record with one version costs no
    /// history read.
    pub fn record_history(
        &self,
        origin: &str,
        record_id: &str,
        latest: RecordLocation,
        newest_checkpoint: u64,
        known_at: Option<i64>,
    ) -> Result<Vec<RecordVersion>, EngineError> {
        let locations = if latest.version <= 1 {
            vec![latest]
        } else {
            self.store.versions(origin, record_id)?
        };
        let mut history = Vec::with_capacity(locations.len());
        for loc in locations {
            let v = self.record_version_under(origin, loc.seq, newest_checkpoint)?;
            if known_at.is_none_or(|t| v.logged_at <= t) {
                history.push(v);
            }
        }
        Ok(history)
    }

    /// The record version held at `origin`/`seq`, as the view sees it.
    pub fn record_version(&self, origin: &str, seq: u64) -> Result<RecordVersion, EngineError> {
        let newest = self.store.checkpoint(origin)?.map_or(0, |c| c.size);
        self.record_version_under(origin, seq, newest)
    }

    /// [`Engine::record_version`] given the size of `origin`'s newest checkpoint, for callers
    /// reading many records of one origin.
    fn record_version_under(
        &self,
        origin: &str,
        seq: u64,
        newest_checkpoint: u64,
    ) -> Result<RecordVersion, EngineError> {
        let leaf = self.store.leaf(origin, seq)?.ok_or_else(|| {
            EngineError::Internal(format!(
                "index names {origin} seq {seq}, which is not stored"
            ))
        })?;
        self.version_of_leaf(origin, seq, &leaf, newest_checkpoint)
    }

    /// The record version `leaf`, held at `origin`/`seq`, is, as the view sees it.
    pub(crate) fn version_of_leaf(
        &self,
        origin: &str,
        seq: u64,
        leaf: &[u8],
        newest_checkpoint: u64,
    ) -> Result<RecordVersion, EngineError> {
        let parts = entry::parse_leaf(leaf)
            .map_err(|e| EngineError::Internal(format!("{origin} seq {seq}: {e}")))?;
        let entry = pb::Entry::decode(parts.entry)
            .map_err(|e| EngineError::Internal(format!("{origin} seq {seq}: {e}")))?;
        let record = entry.record.unwrap_or_default();
        let checkpoint_size = if newest_checkpoint > seq {
            newest_checkpoint
        } else {
            0
        };
        Ok(RecordVersion {
            origin: origin.to_owned(),
            seq,
            logged_at: entry.logged_at,
            unknown_category: !self.catalogue.is_known(&record.category),
            legacy_code: self.legacy_code(&record),
            record: Arc::new(record),
            checkpoint_size,
            invalid: self.store.invalid(origin, seq)?,
        })
    }

    fn known_origin(&self, origin: &str) -> Result<(), EngineError> {
        if self.member(origin).is_none() {
            return Err(EngineError::InvalidArgument(format!(
                "origin: {origin:?} is not a member of consortium {}",
                self.consortium
            )));
        }
        Ok(())
    }

    /// A proof bundle for the entry at `seq` (or the latest version of `record_id`) against
    /// the newest checkpoint that covers it.
    pub fn proof(
        &self,
        origin: &str,
        seq: Option<u64>,
        record_id: Option<&str>,
    ) -> Result<pb::ProofBundle, EngineError> {
        self.known_origin(origin)?;
        let seq = match (seq, record_id) {
            (Some(seq), _) => seq,
            (None, Some(id)) => {
                self.store
                    .record(origin, id)?
                    .ok_or_else(|| {
                        EngineError::NotFound(format!(
                            "record_id: {origin} has no record {id:?} on this node"
                        ))
                    })?
                    .seq
            }
            (None, None) => {
                return Err(EngineError::InvalidArgument(
                    "target: give a seq or a record_id".into(),
                ));
            }
        };
        let checkpoint = self.store.checkpoint(origin)?.ok_or_else(|| {
            EngineError::NotFound(format!(
                "origin: this node holds no checkpoint of {origin} yet"
            ))
        })?;
        if seq >= checkpoint.size {
            return Err(EngineError::NotFound(format!(
                "seq: {seq} is not covered by the newest checkpoint of {origin} (size {}) yet",
                checkpoint.size
            )));
        }
        let leaf = self.store.leaf(origin, seq)?.ok_or_else(|| {
            EngineError::Internal(format!(
                "{origin} seq {seq} is below the checkpoint but not stored"
            ))
        })?;
        let path = merkle::inclusion_proof(seq, checkpoint.size, &self.store.hash_reader(origin))
            .map_err(|e| EngineError::Internal(format!("inclusion proof: {e}")))?;
        Ok(pb::ProofBundle {
            origin: origin.to_owned(),
            index: seq,
            signed_entry: leaf,
            inclusion_path: path.iter().map(|h| h.0.to_vec()).collect(),
            checkpoint: Some(pb::SignedCheckpoint {
                note: checkpoint.note,
            }),
        })
    }

    /// A consistency proof between two sizes of `origin`'s log (`new_size` 0: the newest checkpoint's).
    pub fn consistency(
        &self,
        origin: &str,
        old_size: u64,
        new_size: u64,
    ) -> Result<pb::ConsistencyProof, EngineError> {
        self.known_origin(origin)?;
        let (new_size, checkpoint) = if new_size == 0 {
            let cp = self.store.checkpoint(origin)?.ok_or_else(|| {
                EngineError::NotFound(format!(
                    "origin: this node holds no checkpoint of {origin} yet"
                ))
            })?;
            (cp.size, Some(cp.note))
        } else {
            (new_size, self.store.checkpoint_at(origin, new_size)?)
        };
        let size = self.store.origin_state(origin).size;
        if old_size > new_size || new_size > size {
            return Err(EngineError::InvalidArgument(format!(
                "old_size, new_size: need old_size <= new_size <= {size} (the entries held of {origin}), got {old_size} and {new_size}"
            )));
        }
        let path = merkle::consistency_proof(old_size, new_size, &self.store.hash_reader(origin))
            .map_err(|e| EngineError::Internal(format!("consistency proof: {e}")))?;
        Ok(pb::ConsistencyProof {
            origin: origin.to_owned(),
            old_size,
            new_size,
            path: path.iter().map(|h| h.0.to_vec()).collect(),
            checkpoint: checkpoint.map(|note| pb::SignedCheckpoint { note }),
        })
    }

    /// A range of `origin`'s log, verbatim.
    pub fn entries(
        &self,
        origin: &str,
        start: u64,
        limit: usize,
    ) -> Result<pb::EntryBatch, EngineError> {
        self.known_origin(origin)?;
        let limit = match limit {
            0 => 1000,
            n => n.min(MAX_ENTRIES_PAGE),
        };
        Ok(pb::EntryBatch {
            origin: origin.to_owned(),
            first_seq: start,
            entries: self.store.leaves(origin, start, limit)?,
        })
    }

    /// The checkpoint history held for `origin`, oldest first.
    pub fn checkpoint_history(&self, origin: &str) -> Result<Vec<Vec<u8>>, EngineError> {
        self.known_origin(origin)?;
        Ok(self
            .store
            .checkpoints(origin, 0, usize::MAX)?
            .into_iter()
            .map(|n| n.note)
            .collect())
    }

    /// Equivocation evidence held, for one origin or all.
    pub fn evidence(&self, origin: Option<&str>) -> Result<Vec<pb::Evidence>, EngineError> {
        let origins: Vec<String> = match origin {
            Some(o) => {
                self.known_origin(o)?;
                vec![o.to_owned()]
            }
            None => self.members().map(|m| m.city.clone()).collect(),
        };
        let mut all = Vec::new();
        for origin in origins {
            for blob in self.store.evidence(&origin)? {
                let evidence = pb::Evidence::decode(blob.as_slice()).map_err(|e| {
                    EngineError::Internal(format!("stored evidence of {origin}: {e}"))
                })?;
                all.push(evidence);
            }
        }
        Ok(all)
    }

    /// Size, lag, checkpoint and fork state of every member origin.
    pub fn origin_figures(&self) -> Result<Vec<OriginFigures>, EngineError> {
        let now = self.clock.now_millis();
        let mut figures = Vec::new();
        for member in self.members() {
            let origin = member.city.as_str();
            let state = self.store.origin_state(origin);
            let (checkpoint_size, checkpoint_age_ms, cosignatures) =
                match self.store.checkpoint(origin)? {
                    Some(cp) => {
                        let signed = self.verify_note(origin, &cp.note)?;
                        // Age since this node stored it; after a restart, since its newest
                        // cosignature.
                        let stored_at = self.checkpoint_stored_at(origin, cp.size).or_else(|| {
                            signed
                                .cosignatures
                                .iter()
                                .map(|c| c.timestamp as i64 * 1000)
                                .max()
                        });
                        let age = stored_at.map_or(0, |t| (now - t).max(0));
                        (cp.size, age, signed.cosignatures.len() as u32)
                    }
                    None => (0, 0, 0),
                };
            let peers = self.members.len().saturating_sub(1);
            let size_if = |holds: bool| if holds { checkpoint_size } else { 0 };
            figures.push(OriginFigures {
                origin: origin.to_owned(),
                local_size: state.size,
                indexed_size: self.store.indexed(origin),
                best_seen_size: self.best_seen(origin),
                checkpoint_size,
                checkpoint_age_ms,
                cosignatures,
                published_size: size_if(cosignatures >= 2),
                final_size: size_if(cosignatures > 0 && cosignatures as usize >= peers),
                forked: state.forked,
            });
        }
        Ok(figures)
    }
}
