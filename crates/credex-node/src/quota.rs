//! Per-client quotas, keyed by SPIFFE ID: a request rate (a token bucket) on the client-facing
//! services and a bound on the RPCs one identity has in flight at once, across all its
//! connections. `[limits]` sets both (see ARCHITECTURE.md *Limits*).
//!
//! Identities are issued by the consortium CA, so the keys are few and the tables stay small;
//! a caller without a usable identity is refused by [`crate::auth`] before it reaches a quota.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tls::Identity;

/// The quotas of one node.
#[derive(Debug, Clone)]
pub struct Quotas {
    rate: Arc<DefaultKeyedRateLimiter<String>>,
    requests_per_second: NonZeroU32,
    in_flight: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    max_in_flight: usize,
}

/// Holds one of an identity's in-flight slots; dropping it frees the slot. A streaming RPC
/// keeps it for the stream's life.
#[derive(Debug)]
pub struct InFlight(#[allow(dead_code)] OwnedSemaphorePermit);

impl Quotas {
    /// `requests_per_second` sustained with bursts of `burst`, and `max_in_flight` RPCs at once,
    /// per identity.
    pub fn new(requests_per_second: NonZeroU32, burst: NonZeroU32, max_in_flight: usize) -> Self {
        let quota = Quota::per_second(requests_per_second).allow_burst(burst);
        Self {
            rate: Arc::new(DefaultKeyedRateLimiter::dashmap(quota)),
            requests_per_second,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Takes a token of `who`'s request rate, or `RESOURCE_EXHAUSTED` naming the limit.
    pub fn rate(&self, who: &Identity) -> Result<(), tonic::Status> {
        self.rate.check_key(&who.to_string()).map_err(|_| {
            tonic::Status::resource_exhausted(format!(
                "{who}: request rate limit reached (limits.requests_per_second = {}); retry later",
                self.requests_per_second
            ))
        })
    }

    /// Takes one of `who`'s in-flight slots, or `RESOURCE_EXHAUSTED` naming the limit.
    pub fn in_flight(&self, who: &Identity) -> Result<InFlight, tonic::Status> {
        let semaphore = {
            let mut table = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            // Forget identities with nothing in flight, so the table holds only active callers.
            table.retain(|_, s| s.available_permits() < self.max_in_flight);
            table
                .entry(who.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_in_flight)))
                .clone()
        };
        semaphore.try_acquire_owned().map(InFlight).map_err(|_| {
            tonic::Status::resource_exhausted(format!(
                "{who}: {} calls already in flight (limits.max_calls_per_client); wait for one to end",
                self.max_in_flight
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Role;

    fn id(role: Role) -> Identity {
        Identity::new("mid-yangtze", "changsha", role).unwrap()
    }

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn a_client_beyond_its_burst_is_refused_and_others_are_not() {
        // One token a second: the test runs well within the second it takes to earn another.
        let quotas = Quotas::new(n(1), n(3), 8);
        let reader = id(Role::Reader);
        for _ in 0..3 {
            quotas.rate(&reader).unwrap();
        }
        let refused = quotas.rate(&reader).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "spiffe://mid-yangtze/changsha/reader: request rate limit reached (limits.requests_per_second = 1); retry later"
        );
        quotas.rate(&id(Role::Operator)).unwrap();
    }

    #[test]
    fn in_flight_slots_are_per_identity_and_freed_on_drop() {
        let quotas = Quotas::new(n(100), n(100), 2);
        let reader = id(Role::Reader);
        let first = quotas.in_flight(&reader).unwrap();
        let _second = quotas.in_flight(&reader).unwrap();
        let refused = quotas.in_flight(&reader).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("2 calls already in flight"),
            "{refused:?}"
        );
        let _other = quotas.in_flight(&id(Role::Operator)).unwrap();
        drop(first);
        quotas.in_flight(&reader).unwrap();
    }
}
