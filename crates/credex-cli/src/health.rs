//! The standard gRPC health check (`grpc.health.v1.Health/Check`), as `grpcurl` and load
//! balancers call it, used by `credexctl demo` to wait for nodes: tonic-health's client, the
//! crate credex-node serves the protocol with.

use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `ServingStatus.SERVING`.
pub const SERVING: i32 = ServingStatus::Serving as i32;

/// The protocol's name of a `ServingStatus` value (`SERVING`, `NOT_SERVING` …).
pub fn status_name(status: i32) -> &'static str {
    ServingStatus::try_from(status).map_or("UNRECOGNISED", |s| s.as_str_name())
}

/// Asks the server on `channel` for the health of `service` ("" for the whole server).
pub async fn check(channel: Channel, service: &str) -> Result<i32, Status> {
    let request = Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    let response = HealthClient::new(channel).check(request).await?;
    Ok(response.into_inner().status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_protocols() {
        let names: Vec<&str> = (0..5).map(status_name).collect();
        assert_eq!(
            names,
            [
                "UNKNOWN",
                "SERVING",
                "NOT_SERVING",
                "SERVICE_UNKNOWN",
                "UNRECOGNISED"
            ]
        );
    }
}
