//! One keep-alive HTTP/1.1 connection of a viewer (hyper's client connection, one request at a
//! time, as a browser uses each of its few connections to a host), reopened after an error.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// What a GET brought back.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    /// The body when it was asked to be kept (playlists); media bodies are only counted.
    pub body: Option<Bytes>,
    pub len: u64,
    /// When the last byte arrived.
    pub done: Instant,
}

#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Empty<Bytes>>>,
    /// Connections opened (1 for a connection that never failed).
    pub opened: u32,
}

impl Conn {
    pub fn new(addr: SocketAddr, host: String) -> Self {
        Self {
            addr,
            host,
            sender: None,
            opened: 0,
        }
    }

    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Empty<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let tcp = tokio::net::TcpStream::connect(self.addr).await?;
            // A request is one small write; without this it may wait for the previous ACK.
            tcp.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the server closes; errors show at the request.
                let _ = conn.await;
            });
            self.opened += 1;
            self.sender = Some(sender);
        }
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no connection"))?;
        sender.ready().await?;
        Ok(sender)
    }

    /// GET `path_and_query`; bounded by `deadline`. On any error the connection is dropped (the
    /// next request opens a new one), like a browser after a failed request.
    pub async fn get(
        &mut self,
        path_and_query: &str,
        keep_body: bool,
        deadline: Instant,
    ) -> anyhow::Result<Got> {
        let r = tokio::time::timeout_at(deadline, self.get_inner(path_and_query, keep_body)).await;
        match r {
            Ok(Ok(got)) => Ok(got),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                anyhow::bail!("timed out")
            }
        }
    }

    async fn get_inner(&mut self, path_and_query: &str, keep_body: bool) -> anyhow::Result<Got> {
        let req = hyper::Request::get(path_and_query)
            .header(hyper::header::HOST, self.host.as_str())
            .body(Empty::<Bytes>::new())?;
        let res = self.sender().await?.send_request(req).await?;
        let status = res.status().as_u16();
        let mut body = res.into_body();
        let mut kept = keep_body.then(BytesMut::new);
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                len += data.len() as u64;
                if let Some(k) = kept.as_mut() {
                    k.extend_from_slice(data);
                }
            }
        }
        Ok(Got {
            status,
            body: kept.map(BytesMut::freeze),
            len,
            done: Instant::now(),
        })
    }
}
