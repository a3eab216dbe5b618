//! The gRPC services: thin adapters that authorise the caller, convert protobuf requests to
//! engine calls, and map [`EngineError`] to a `tonic::Status` in one place ([`status`]).

use std::pin::Pin;
use std::sync::Arc;

use credex_core::pb;
use credex_core::pb::{
    audit_server::Audit, exchange_server::Exchange, operator_server::Operator,
    publisher_server::Publisher, view_server::View, witness_server::Witness,
};
use futures::Stream;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{self, Authorizer, Rpc};
use crate::engine::access::{self, Access};
use crate::engine::publish::{PublishQueue, Versions};
use crate::engine::query::{self, ListFilter};
use crate::engine::witness::WitnessAnswer;
use crate::engine::{Engine, EngineError};
use crate::quota::InFlight;
use crate::sync::{self, PeerTable};
use crate::tls;
use credex_store::StoreError;

/// Every credex service of one node.
#[derive(Debug, Clone)]
pub struct Api {
    pub engine: Arc<Engine>,
    pub auth: Authorizer,
    pub publisher: PublishQueue,
    pub peers: Arc<PeerTable>,
    pub shutdown: watch::Receiver<bool>,
}

/// The one place engine errors become gRPC statuses.
pub fn status(error: EngineError) -> Status {
    match error {
        EngineError::InvalidArgument(m) => Status::invalid_argument(m),
        EngineError::NotFound(m) => Status::not_found(m),
        EngineError::FailedPrecondition(m) => Status::failed_precondition(m),
        EngineError::ShuttingDown => Status::unavailable("node is shutting down"),
        EngineError::Unavailable(m) => Status::unavailable(m),
        EngineError::ResourceExhausted(m) => {
            tracing::warn!(error = %m, "refused: resource exhausted");
            Status::resource_exhausted(m)
        }
        // A full disk is the operator's to fix and the caller's to retry later, not a bug:
        // said as such, and logged without the stack of an internal error.
        EngineError::Store(e) if e.is_disk_full() => {
            tracing::warn!(error = %e, "write refused: disk full");
            Status::resource_exhausted(format!("storage: {e}"))
        }
        EngineError::Store(e @ (StoreError::Failed { .. } | StoreError::FlushTimeout { .. })) => {
            tracing::warn!(error = %e, "write refused: storage failed");
            Status::unavailable(format!("storage: {e}"))
        }
        e @ (EngineError::Store(_) | EngineError::Internal(_)) => {
            tracing::error!(error = %e, "internal error");
            Status::internal(e.to_string())
        }
    }
}

/// Masks every resident ID number in a view record (DESIGN.md: masked in listings) except
/// `asked`, the number the caller looked up and so already knows; masks nothing for a caller
/// who sees full identities (`full`, see [`auth::sees_full_identity`]).
fn masked(mut record: pb::ViewRecord, asked: Option<&str>, full: bool) -> pb::ViewRecord {
    if full {
        return record;
    }
    let mask = |id: &mut String| {
        if !id.is_empty() && Some(id.as_str()) != asked {
            *id = credex_core::ident::mask_id_number(id);
        }
    };
    if let Some(subject) = record.record.as_mut().and_then(|r| r.subject.as_mut()) {
        mask(&mut subject.id_number);
        if let Some(rep) = subject.legal_representative.as_mut() {
            mask(&mut rep.id_number);
        }
    }
    record
}

impl Api {
    /// Authorises the call and takes its slot of the caller's quotas, held until it ends.
    fn admit<T>(&self, request: &Request<T>, rpc: Rpc) -> Result<InFlight, Status> {
        self.auth.admit(auth::Caller::of(request), rpc)
    }

    /// For a caller who sees full identities, the access to log: who it is, and the purpose it
    /// stated (checked); `None` for every other caller, whose purpose is ignored.
    fn full_identity_access<T>(
        request: &Request<T>,
        purpose: &str,
    ) -> Result<Option<(String, String)>, Status> {
        let who = tls::peer_identity(request);
        if !auth::sees_full_identity(who) {
            return Ok(None);
        }
        let who = who.map(ToString::to_string).unwrap_or_default();
        let purpose = access::check_purpose(purpose).map_err(status)?;
        Ok(Some((who, purpose.to_owned())))
    }

    /// Writes a full-identity access to the log before the caller is answered.
    async fn log_access(
        &self,
        access: Option<(String, String)>,
        rpc: Rpc,
        subject: String,
    ) -> Result<(), Status> {
        let Some((who, purpose)) = access else {
            return Ok(());
        };
        self.engine
            .log_access(Access {
                who,
                rpc: rpc.name().to_owned(),
                subject,
                purpose,
            })
            .await
            .map_err(status)
    }

    fn caller<T>(request: &Request<T>) -> String {
        tls::peer_identity(request).map_or_else(|| "unknown".to_owned(), |i| i.city.clone())
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `stream`, holding the call's quota slot for as long as the stream lives.
fn held<T: 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    call: InFlight,
) -> BoxStream<T> {
    use futures::StreamExt;
    Box::pin(stream.map(move |item| {
        let _held = &call;
        item
    }))
}

#[tonic::async_trait]
impl Exchange for Api {
    type SyncStream = BoxStream<pb::SyncFrame>;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let call = self.admit(&request, Rpc::Sync)?;
        sync::check_request(&self.engine, request.get_ref())?;
        let peer = Self::caller(&request);
        let conn = request
            .extensions()
            .get::<tls::ConnInfo>()
            .map(|c| c.closer.clone())
            .unwrap_or_default();
        let rx = sync::serve(
            self.engine.clone(),
            request.into_inner(),
            peer,
            self.shutdown.clone(),
            self.peers.clone(),
            conn,
        );
        Ok(Response::new(held(ReceiverStream::new(rx), call)))
    }
}

#[tonic::async_trait]
impl Witness for Api {
    async fn add_checkpoint(
        &self,
        request: Request<pb::AddCheckpointRequest>,
    ) -> Result<Response<pb::AddCheckpointResponse>, Status> {
        let _call = self.admit(&request, Rpc::AddCheckpoint)?;
        let req = request.into_inner();
        let note = req
            .checkpoint
            .ok_or_else(|| Status::invalid_argument("checkpoint: required"))?
            .note;
        let answer = self
            .engine
            .add_checkpoint(req.old_size, &req.consistency_proof, &note)
            .await
            .map_err(status)?;
        let result = match answer {
            WitnessAnswer::Cosigned(line) => pb::add_checkpoint_response::Result::Cosignature(line),
            WitnessAnswer::Refused {
                reason,
                latest,
                latest_size,
            } => pb::add_checkpoint_response::Result::Refusal(pb::WitnessRefusal {
                reason,
                latest: latest.map(|note| pb::SignedCheckpoint { note }),
                latest_size,
            }),
        };
        Ok(Response::new(pb::AddCheckpointResponse {
            result: Some(result),
        }))
    }
}

#[tonic::async_trait]
impl Publisher for Api {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let _call = self.admit(&request, Rpc::Publish)?;
        let request = request.into_inner();
        let versions = if request.assign_versions {
            Versions::Assign
        } else {
            Versions::Given
        };
        let receipt = self
            .publisher
            .publish_with(request.records, versions)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PublishResponse {
            published: receipt
                .published
                .into_iter()
                .map(|p| pb::PublishedEntry {
                    record_id: p.record_id,
                    version: p.version,
                    seq: p.seq,
                    already_present: p.already_present,
                })
                .collect(),
            tree_size: receipt.tree_size,
        }))
    }
}

#[tonic::async_trait]
impl View for Api {
    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let _call = self.admit(&request, Rpc::ViewLookup)?;
        let access = Self::full_identity_access(&request, &request.get_ref().purpose)?;
        let full = access.is_some();
        let req = request.into_inner();
        let page_size = match req.page_size {
            0 => query::MAX_PAGE,
            n => (n as usize).min(query::MAX_PAGE),
        };
        let known_at = self
            .engine
            .known_at(
                req.as_known_at,
                &req.as_known_at_origin,
                req.as_known_at_size,
            )
            .map_err(status)?;
        if req.as_of.is_empty() {
            // "Today" at start is the witnesses' day once they have answered.
            self.engine.wait_for_witnesses().await;
        }
        let lookup = self
            .engine
            .lookup_page(
                &req.subject_id,
                &req.as_of,
                known_at,
                page_size,
                query::MAX_PAGE_BYTES,
                &req.page_token,
            )
            .map_err(status)?;
        self.log_access(access, Rpc::ViewLookup, lookup.subject.clone())
            .await?;
        let asked = lookup.subject.as_str();
        Ok(Response::new(pb::LookupResponse {
            subject_id: if full {
                lookup.subject.clone()
            } else {
                lookup.subject_masked.clone()
            },
            next_page_token: lookup.next_page_token.clone(),
            in_force: lookup
                .view
                .in_force
                .iter()
                .map(|r| masked(r.to_pb(), Some(asked), full))
                .collect(),
            excluded: lookup.view.excluded.iter().map(|r| r.to_pb()).collect(),
            as_of: credex_core::date::format_date(lookup.as_of),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let _call = self.admit(&request, Rpc::ViewList)?;
        let access = Self::full_identity_access(&request, &request.get_ref().purpose)?;
        let full = access.is_some();
        let req = request.into_inner();
        let list = match pb::ListKind::try_from(req.list) {
            Ok(pb::ListKind::Unspecified) => None,
            Ok(kind) => Some(kind),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "list: {} is not a list kind",
                    req.list
                )));
            }
        };
        let filter = ListFilter {
            origin: Some(req.origin).filter(|o| !o.is_empty()),
            list,
            category: Some(req.category).filter(|c| !c.is_empty()),
        };
        let known_at = self
            .engine
            .known_at(
                req.as_known_at,
                &req.as_known_at_origin,
                req.as_known_at_size,
            )
            .map_err(status)?;
        if req.as_of.is_empty() {
            self.engine.wait_for_witnesses().await;
        }
        let page = self
            .engine
            .list(
                &filter,
                req.page_size as usize,
                &req.page_token,
                &req.as_of,
                known_at,
            )
            .map_err(status)?;
        let described = format!(
            "origin={} list={} category={} as_of={} as_known_at={} page_token={}",
            filter.origin.as_deref().unwrap_or("*"),
            list.map_or("*", |l| l.as_str_name()),
            filter.category.as_deref().unwrap_or("*"),
            if req.as_of.is_empty() {
                "today"
            } else {
                &req.as_of
            },
            known_at,
            req.page_token,
        );
        self.log_access(access, Rpc::ViewList, described).await?;
        Ok(Response::new(pb::ListResponse {
            records: page
                .records
                .iter()
                .map(|r| masked(r.to_pb(), None, full))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchStream = BoxStream<pb::ViewChange>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let call = self.admit(&request, Rpc::ViewWatch)?;
        let access = Self::full_identity_access(&request, &request.get_ref().purpose)?;
        let full = access.is_some();
        let request = request.into_inner();
        let after = request.after;
        self.log_access(access, Rpc::ViewWatch, format!("changes after {after}"))
            .await?;
        let engine = self.engine.clone();
        let mut shutdown = self.shutdown.clone();
        // `after` 0 means from now on; otherwise resume after change seq `after`, which is
        // store change `after - 1` (see `Engine::changes`).
        let mut next = if after == 0 && !request.from_start {
            engine.change_head()
        } else {
            after
        };
        // Where this stream starts, as the `after` that resumes there.
        let resume_after = tonic::metadata::MetadataValue::from(next);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut advanced = engine.subscribe();
            loop {
                advanced.borrow_and_update();
                let changes = match engine.changes(next, 256) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                };
                let caught_up = changes.len() < 256;
                for mut change in changes {
                    next = change.change_seq;
                    if full {
                        // The feed keeps subjects masked; this caller sees them in full.
                        match engine.full_subject(&change) {
                            Ok(subject) => change.subject_id = subject,
                            Err(e) => {
                                let _ = tx.send(Err(status(e))).await;
                                return;
                            }
                        }
                    }
                    if tx.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
                if caught_up {
                    tokio::select! {
                        changed = advanced.changed() => if changed.is_err() { return },
                        () = crate::sync::stopped(&mut shutdown) => return,
                        () = tx.closed() => return,
                    }
                }
            }
        });
        let mut response = Response::new(held(ReceiverStream::new(rx), call));
        response
            .metadata_mut()
            .insert("credex-resume-after", resume_after);
        Ok(response)
    }
}

#[tonic::async_trait]
impl Audit for Api {
    async fn get_proof(
        &self,
        request: Request<pb::GetProofRequest>,
    ) -> Result<Response<pb::ProofBundle>, Status> {
        let _call = self.admit(&request, Rpc::GetProof)?;
        let req = request.into_inner();
        let (seq, record_id) = match &req.target {
            Some(pb::get_proof_request::Target::Seq(seq)) => (Some(*seq), None),
            Some(pb::get_proof_request::Target::RecordId(id)) => (None, Some(id.as_str())),
            None => (None, None),
        };
        let bundle = self
            .engine
            .proof(&req.origin, seq, record_id)
            .map_err(status)?;
        Ok(Response::new(bundle))
    }

    async fn get_consistency(
        &self,
        request: Request<pb::GetConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let _call = self.admit(&request, Rpc::GetConsistency)?;
        let req = request.into_inner();
        let proof = self
            .engine
            .consistency(&req.origin, req.old_size, req.new_size)
            .map_err(status)?;
        Ok(Response::new(proof))
    }

    async fn list_evidence(
        &self,
        request: Request<pb::ListEvidenceRequest>,
    ) -> Result<Response<pb::ListEvidenceResponse>, Status> {
        let _call = self.admit(&request, Rpc::ListEvidence)?;
        let origin = request.into_inner().origin;
        let evidence = self
            .engine
            .evidence(Some(origin.as_str()).filter(|o| !o.is_empty()))
            .map_err(status)?;
        Ok(Response::new(pb::ListEvidenceResponse { evidence }))
    }

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::EntryBatch>, Status> {
        let _call = self.admit(&request, Rpc::GetEntries)?;
        let req = request.into_inner();
        let batch = self
            .engine
            .entries(&req.origin, req.start, req.limit as usize)
            .map_err(status)?;
        Ok(Response::new(batch))
    }

    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let _call = self.admit(&request, Rpc::ListCheckpoints)?;
        let notes = self
            .engine
            .checkpoint_history(&request.into_inner().origin)
            .map_err(status)?;
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: notes
                .into_iter()
                .map(|note| pb::SignedCheckpoint { note })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl Operator for Api {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let _call = self.admit(&request, Rpc::Status)?;
        let view = match request.get_ref().skip_view {
            true => None,
            false => Some(self.engine.view_counts().map_err(status)?.counts),
        };
        let engine = self.engine.clone();
        let peers = self.peers.snapshot();
        // Status reads every origin's checkpoint and the invalid marks: off the async workers.
        let response =
            tokio::task::spawn_blocking(move || -> Result<pb::StatusResponse, EngineError> {
                let origins = engine
                    .origin_figures()?
                    .into_iter()
                    .map(|o| pb::OriginStatus {
                        lag: o.best_seen_size.saturating_sub(o.local_size),
                        origin: o.origin,
                        local_size: o.local_size,
                        indexed_size: o.indexed_size,
                        best_seen_size: o.best_seen_size,
                        checkpoint_age_ms: o.checkpoint_age_ms,
                        published_size: o.published_size,
                        final_size: o.final_size,
                        cosignatures: o.cosignatures,
                        forked: o.forked,
                    })
                    .collect();
                let quarantine = engine
                    .quarantine_counts()?
                    .into_iter()
                    .map(|(reason, count)| pb::QuarantineCount { reason, count })
                    .collect();
                let mut invalid_entries = 0;
                for member in engine.members() {
                    invalid_entries += engine.invalid_count(&member.city);
                }
                let storage = engine.storage()?;
                Ok(pb::StatusResponse {
                    city: engine.city.clone(),
                    consortium: engine.consortium.clone(),
                    peers: peers
                        .into_iter()
                        .map(|(city, p)| pb::PeerStatus {
                            city,
                            address: p.address,
                            connected: p.connected,
                            last_contact: p.last_contact_ms,
                            last_error: p.last_error,
                            round_trip_ms: p.round_trip_ms,
                        })
                        .collect(),
                    origins,
                    quarantine,
                    view,
                    invalid_entries,
                    storage: Some(pb::StorageStatus {
                        free_bytes: storage.free,
                        min_free_bytes: storage.min_free,
                        full: storage.full(),
                        failed: storage.failed.unwrap_or_default(),
                    }),
                })
            })
            .await
            .map_err(|e| Status::internal(format!("status task: {e}")))?
            .map_err(status)?;
        Ok(Response::new(response))
    }

    async fn list_quarantine(
        &self,
        request: Request<pb::ListQuarantineRequest>,
    ) -> Result<Response<pb::ListQuarantineResponse>, Status> {
        let _call = self.admit(&request, Rpc::ListQuarantine)?;
        let req = request.into_inner();
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(1000),
        };
        let origin = Some(req.origin.as_str()).filter(|o| !o.is_empty());
        let entries = self
            .engine
            .quarantined(origin, limit)
            .map_err(status)?
            .into_iter()
            .map(|q| pb::QuarantinedEntry {
                origin: q.record.origin,
                seq: q.record.seq,
                reason: format!("{}: {}", q.record.reason, q.record.detail),
                signed_entry: q.record.leaf,
                received_from: q.record.received_from,
                received_at: q.record.received_at_ms as i64,
            })
            .collect();
        Ok(Response::new(pb::ListQuarantineResponse { entries }))
    }

    async fn list_invalid(
        &self,
        request: Request<pb::ListInvalidRequest>,
    ) -> Result<Response<pb::ListInvalidResponse>, Status> {
        let _call = self.admit(&request, Rpc::ListInvalid)?;
        let req = request.into_inner();
        let engine = self.engine.clone();
        let page = tokio::task::spawn_blocking(move || {
            let origin = Some(req.origin.as_str()).filter(|o| !o.is_empty());
            engine.list_invalid(origin, req.page_size as usize, &req.page_token)
        })
        .await
        .map_err(|e| Status::internal(format!("list invalid task: {e}")))?
        .map_err(status)?;
        Ok(Response::new(pb::ListInvalidResponse {
            entries: page
                .entries
                .into_iter()
                .map(|e| pb::InvalidEntry {
                    origin: e.origin,
                    seq: e.seq,
                    record_id: e.record_id,
                    version: e.version,
                    reason: e.reason,
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_access(
        &self,
        request: Request<pb::ListAccessRequest>,
    ) -> Result<Response<pb::ListAccessResponse>, Status> {
        let _call = self.admit(&request, Rpc::ListAccess)?;
        let req = request.into_inner();
        let engine = self.engine.clone();
        let page = tokio::task::spawn_blocking(move || {
            engine.list_access(req.page_size as usize, &req.page_token)
        })
        .await
        .map_err(|e| Status::internal(format!("list access task: {e}")))?
        .map_err(status)?;
        Ok(Response::new(pb::ListAccessResponse {
            entries: page
                .entries
                .into_iter()
                .map(|(number, a)| pb::AccessEntry {
                    number,
                    at: a.at_ms,
                    who: a.who,
                    rpc: a.rpc,
                    subject: a.subject,
                    purpose: a.purpose,
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
