//! The access log (查询留痕): every view request that sees resident ID numbers in full — the
//! `enforcement` role's — is written, with who asked, when, which RPC, what and why, before
//! it is answered. Append-only in the store; read back paged by `Operator.ListAccess`.

use credex_core::ident::SubjectId;
use credex_core::pb;
use credex_store::{AccessRecord, WriteBatch};

use super::{Engine, EngineError};

/// Longest purpose accepted, in characters: a case number and a line of reason, with room.
pub const MAX_PURPOSE_CHARS: usize = 200;
/// Most accesses one ListAccess page returns.
pub const MAX_ACCESS_PAGE: usize = 1000;

/// One access to log: the time is the engine clock's when it is written.
#[derive(Debug, Clone)]
pub struct Access {
    /// The caller's SPIFFE ID.
    pub who: String,
    /// `View.Lookup`, `View.List` or `View.Watch`.
    pub rpc: String,
    /// The full identifier looked up, or a description of a list's or watch's filter.
    pub subject: String,
    pub purpose: String,
}

/// One page of the access log.
#[derive(Debug, Clone)]
pub struct AccessPage {
    /// (access number, access), in the order written.
    pub entries: Vec<(u64, AccessRecord)>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// The purpose a caller who sees full identities must state, trimmed; the error names the field.
pub fn check_purpose(purpose: &str) -> Result<&str, EngineError> {
    let purpose = purpose.trim();
    if purpose.is_empty() {
        return Err(EngineError::InvalidArgument(
            "purpose: required for the enforcement role (查询事由: why this query is made)".into(),
        ));
    }
    let chars = purpose.chars().count();
    if chars > MAX_PURPOSE_CHARS {
        return Err(EngineError::InvalidArgument(format!(
            "purpose: {chars} characters, at most {MAX_PURPOSE_CHARS}"
        )));
    }
    Ok(purpose)
}

impl Engine {
    /// Writes `access` to the access log, durably, before the caller answers: one batch
    /// through the single writer, flushed.
    pub async fn log_access(&self, access: Access) -> Result<(), EngineError> {
        let mut batch = WriteBatch::new();
        batch.log_access(AccessRecord {
            at_ms: self.clock.now_millis(),
            who: access.who,
            rpc: access.rpc,
            subject: access.subject,
            purpose: access.purpose,
        });
        let _writer = self.write_lock.lock().await;
        self.apply(batch).await?;
        self.flush_durable().await?;
        Ok(())
    }

    /// A page of the access log: up to `page_size` (0: 100; capped at [`MAX_ACCESS_PAGE`])
    /// from `page_token` (empty: the first access).
    pub fn list_access(
        &self,
        page_size: usize,
        page_token: &str,
    ) -> Result<AccessPage, EngineError> {
        let from = match page_token {
            "" => 0,
            token => token.parse::<u64>().map_err(|_| {
                EngineError::InvalidArgument(format!(
                    "page_token: {token:?} is not a ListAccess page token"
                ))
            })?,
        };
        let limit = match page_size {
            0 => 100,
            n => n.min(MAX_ACCESS_PAGE),
        };
        // One more than asked says whether another page follows.
        let mut entries = self.store.accesses(from, limit + 1)?;
        let next_page_token = if entries.len() > limit {
            entries.truncate(limit);
            (entries[limit - 1].0 + 1).to_string()
        } else {
            String::new()
        };
        Ok(AccessPage {
            entries,
            next_page_token,
        })
    }

    /// The full identifier of a view change's subject (the change feed keeps it masked), read
    /// from the version the change reports; the masked one if that version is not indexed.
    pub fn full_subject(&self, change: &pb::ViewChange) -> Result<String, EngineError> {
        let Some(location) = self
            .store
            .versions(&change.origin, &change.record_id)?
            .into_iter()
            .find(|l| l.version == u64::from(change.version))
        else {
            return Ok(change.subject_id.clone());
        };
        let version = self.record_version(&change.origin, location.seq)?;
        let Some(subject) = &version.record.subject else {
            return Ok(change.subject_id.clone());
        };
        let key = if subject.uscc.is_empty() {
            &subject.id_number
        } else {
            &subject.uscc
        };
        Ok(SubjectId::parse(key, &self.rules.legacy_uscc_allow_list)
            .map_or_else(|_| key.clone(), |s| s.as_str().to_owned()))
    }
}
