//! The smallest HTTP/1.1 server Prometheus needs: `GET /metrics`, one request per
//! connection, nothing else (read-only: every other method or path gets an error status).

use std::{io, net::SocketAddr, time::Duration};

use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};

/// The longest request head read, in bytes.
const MAX_HEAD: u64 = 8192;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the metrics endpoint, naming the address.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("listening for Prometheus on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The endpoint's listening socket.
pub struct Exporter {
    listener: TcpListener,
}

impl Exporter {
    /// Listens on `address`.
    pub async fn bind(address: SocketAddr) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| HttpError::Bind { address, source })?;
        Ok(Self { listener })
    }

    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next client.
    pub async fn accept(&self) -> io::Result<Scrape> {
        let (stream, _) = self.listener.accept().await?;
        Ok(Scrape { stream })
    }
}

/// What a client gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The metrics text.
    Metrics(String),
    /// Not `GET /metrics`.
    NotFound,
    /// The metrics could not be built, and why.
    Failed(String),
}

/// One HTTP client.
pub struct Scrape {
    stream: TcpStream,
}

impl Scrape {
    /// Reads the request head; `Ok(true)` for `GET /metrics`, `Ok(false)` for anything
    /// else, which gets an error status from [`Scrape::respond`].
    pub async fn wants_metrics(&mut self) -> io::Result<bool> {
        let mut reader = BufReader::new(&mut self.stream).take(MAX_HEAD);
        let mut request_line = String::new();
        let read = async {
            reader.read_line(&mut request_line).await?;
            // The rest of the head, up to the blank line; its headers do not matter.
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok::<_, io::Error>(());
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in 10 s"))??;
        let mut words = request_line.split_whitespace();
        let (method, target) = (words.next(), words.next());
        let path = target.map(|target| target.split('?').next().unwrap_or(target));
        Ok(method == Some("GET") && path == Some("/metrics"))
    }

    /// Sends `reply` and ends the connection.
    pub async fn respond(mut self, reply: Reply) {
        let plain = "text/plain; charset=utf-8";
        let (status, content_type, body) = match reply {
            Reply::Metrics(body) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body),
            Reply::NotFound => (
                "404 Not Found",
                plain,
                "sipxdp serves only GET /metrics\n".to_owned(),
            ),
            Reply::Failed(reason) => ("500 Internal Server Error", plain, format!("{reason}\n")),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        // A scraper that went away does not need its answer.
        let _ = self.stream.write_all(head.as_bytes()).await;
        let _ = self.stream.write_all(body.as_bytes()).await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connecting");
        stream.write_all(request.as_bytes()).await.expect("sending");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("reading");
        answer
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_everything_else() {
        let exporter = Exporter::bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("binding");
        let address = exporter.local_addr().expect("an address");
        for (request, wanted, status) in [
            ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true, "200 OK"),
            ("GET /metrics?x=1 HTTP/1.1\r\n\r\n", true, "200 OK"),
            ("POST /metrics HTTP/1.1\r\n\r\n", false, "404"),
            ("GET / HTTP/1.1\r\n\r\n", false, "404"),
        ] {
            let client = tokio::spawn(get(address, request));
            let mut scrape = exporter.accept().await.expect("a client");
            assert_eq!(scrape.wants_metrics().await.expect("a head"), wanted);
            let reply = if wanted {
                Reply::Metrics("x 1\n".to_owned())
            } else {
                Reply::NotFound
            };
            scrape.respond(reply).await;
            let answer = client.await.expect("the client");
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer}"
            );
            if wanted {
                assert!(answer.ends_with("\r\n\r\nx 1\n"), "{answer}");
            }
        }
        let client = tokio::spawn(get(address, "GET /metrics HTTP/1.1\r\n\r\n"));
        let scrape = exporter.accept().await.expect("a client");
        scrape
            .respond(Reply::Failed("the maps are gone".into()))
            .await;
        let answer = client.await.expect("the client");
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    }
}
