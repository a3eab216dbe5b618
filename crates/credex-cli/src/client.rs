//! Connections to a city's node: the client certificate of a role from the consortium
//! folder, mutual TLS with the node's SPIFFE identity checked (`credex_node::tls`), the
//! `--timeout` deadline on connecting and on every request, and gRPC errors shown with their
//! code and message.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use credex_node::tls::{self, Role};
use credex_proto::v1::operator_client::OperatorClient;
use credex_proto::v1::publisher_client::PublisherClient;
use credex_proto::v1::view_client::ViewClient;
use tonic::Status;
use tonic::transport::Channel;

use crate::Global;
use credex_cli::home::{self, Home};

/// Largest response accepted: a page of 1,000 view records with long texts, with room.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// An open channel to one city's node, as one role.
#[derive(Debug, Clone)]
pub struct Connection {
    pub city: String,
    pub address: String,
    pub role: Role,
    channel: Channel,
    timeout: Duration,
}

/// Connects as the global options say: `--home`, `--city`, and `--role` or the command's
/// default role.
pub async fn connect(global: &Global, default_role: Role) -> Result<Connection> {
    let home = global
        .home
        .as_ref()
        .context("no consortium folder: pass --home DIR or set CREDEX_HOME")?;
    let city = global
        .city
        .as_deref()
        .context("no city: pass --city ID or set CREDEX_CITY")?;
    connect_to(
        &Home::new(home),
        city,
        global.role.unwrap_or(default_role),
        global.timeout(),
    )
    .await
}

/// Connects to `city`'s node as `role`, with the certificate the consortium folder holds.
pub async fn connect_to(
    home: &Home,
    city: &str,
    role: Role,
    timeout: Duration,
) -> Result<Connection> {
    let consortium = home.load_consortium()?;
    let member = home::member(&consortium, city)?;
    let files = home.client_files(&consortium, city, role);
    let tls_config = tls::load_client_config(&files)
        .with_context(|| format!("the {role} certificate of {city}"))?;
    let server = credex_node::config::node_identity(&consortium, city);
    // The dialer holds TCP and the handshake to `timeout` (and says which of them hung).
    let channel = tls::connect_within(&member.address, &server, tls_config, timeout)
        .await
        .with_context(|| format!("connecting to {city}"))?;
    Ok(Connection {
        city: city.to_owned(),
        address: member.address.clone(),
        role,
        channel,
        timeout,
    })
}

impl Connection {
    /// A request carrying this connection's deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn publisher(&self) -> PublisherClient<Channel> {
        PublisherClient::new(self.channel())
    }

    pub fn view(&self) -> ViewClient<Channel> {
        ViewClient::new(self.channel()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    pub fn operator(&self) -> OperatorClient<Channel> {
        OperatorClient::new(self.channel()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A failed RPC as an error naming the RPC, the node, the gRPC code and the message.
    pub fn rpc_error(&self, rpc: &str, status: Status) -> anyhow::Error {
        anyhow!(
            "{rpc} on {} ({}) as {}: {}",
            self.city,
            self.address,
            self.role,
            status_text(&status)
        )
    }
}

/// `CODE: message`, with the transport's cause when the status carries one.
/// Follows a paged RPC from the first page to the last: `fetch` gets a page token (empty for the
/// first page) and answers with that page's items and the next token (empty after the last).
pub async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}

pub fn status_text(status: &Status) -> String {
    let mut message = status.message().to_owned();
    if let Some(source) = std::error::Error::source(status) {
        let cause = tls::error_chain(source);
        if !message.contains(&cause) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&cause);
        }
    }
    format!("{}: {message}", code_name(status.code()))
}

pub use credex_node::metrics::code_name;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn statuses_show_code_and_message() {
        assert_eq!(
            status_text(&Status::permission_denied(
                "spiffe://m/changsha/reader may not call Publisher.Publish"
            )),
            "PERMISSION_DENIED: spiffe://m/changsha/reader may not call Publisher.Publish"
        );
        assert_eq!(
            status_text(&Status::new(Code::Unavailable, "")),
            "UNAVAILABLE: "
        );
    }
}
