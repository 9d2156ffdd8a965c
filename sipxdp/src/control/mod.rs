//! The runtime control interface: a Unix socket that only its owner (root, as the daemon
//! runs) may use, speaking [`protocol`]. The daemon serves it ([`ControlSocket`]); the
//! `sipxdp status|hash|backend|reload` commands are its client ([`request`]).

pub mod protocol;

use std::{
    fs,
    io::{self, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};

use self::protocol::{Answer, MAX_REQUEST, Request, decode_answer, encode_answer};

/// How long a client may take to send its request, and the CLI waits for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the control socket, each naming the socket.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("creating the directory of the control socket {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another sipxdp answers on the control socket {0}; stop it first")]
    InUse(PathBuf),
    #[error("binding the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the control socket {0} is only for its owner (root); run this command as root \
         (permission denied)"
    )]
    PermissionDenied(PathBuf),
    #[error("no sipxdp answers on the control socket {0}; is `sipxdp run` running?")]
    NotRunning(PathBuf),
    #[error("talking to sipxdp on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The daemon's listening socket; removed when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path`, readable and writable by its owner only. A missing directory is
    /// created with mode 0700; a stale socket left by a daemon that died is replaced, one
    /// that still answers is an error.
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        if let Some(directory) = path.parent()
            && !directory.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(directory)
                .map_err(|source| ControlError::Directory {
                    path: directory.to_owned(),
                    source,
                })?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_owned()));
            }
            let _ = fs::remove_file(path);
        }
        let bind_error = |source| ControlError::Bind {
            path: path.to_owned(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(bind_error)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// The next client.
    pub async fn accept(&self) -> io::Result<Connection> {
        let (stream, _) = self.listener.accept().await?;
        Ok(Connection { stream })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// One client of the control socket.
pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    /// Reads the client's request line, waiting at most [`CLIENT_TIMEOUT`].
    pub async fn request(&mut self) -> Result<Request, String> {
        let mut line = Vec::new();
        let mut reader = BufReader::new(&mut self.stream).take(MAX_REQUEST as u64 + 1);
        match tokio::time::timeout(CLIENT_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(format!("reading the request: {error}")),
            Err(_) => return Err("no request within 10 s".to_owned()),
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Request::parse(&line).map_err(|error| error.to_string())
    }

    /// Sends `answer` and ends the connection.
    pub async fn answer(mut self, answer: Answer) {
        // A client that went away does not need its answer.
        let _ = self
            .stream
            .write_all(encode_answer(&answer).as_bytes())
            .await;
        let _ = self.stream.shutdown().await;
    }
}

/// Sends `request` to the daemon on `path` and returns its answer.
///
/// # Errors
///
/// No daemon, no permission, or a broken connection, each said plainly.
pub fn request(path: &Path, request: &Request) -> Result<Answer, ControlError> {
    let io_error = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            return Err(ControlError::PermissionDenied(path.to_owned()));
        }
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning(path.to_owned()));
        }
        Err(error) => return Err(io_error(error)),
    };
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_error)?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(io_error)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(io_error)?;
    Ok(decode_answer(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_gets_its_answer_and_the_socket_is_owner_only() {
        let directory =
            std::env::temp_dir().join(format!("sipxdp-control-test-{}", std::process::id()));
        let path = directory.join("sub").join("control.sock");
        let socket = ControlSocket::bind(&path).expect("binding");
        let mode = fs::metadata(&path)
            .expect("the socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let directory_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(directory_mode & 0o777, 0o700);
        assert!(matches!(
            ControlSocket::bind(&path),
            Err(ControlError::InUse(_))
        ));
        // That check connected and left without a request.
        let mut probe = socket.accept().await.expect("the probe");
        assert_eq!(probe.request().await, Err("an empty request".to_owned()));

        let client_path = path.clone();
        let client = tokio::task::spawn_blocking(move || {
            request(
                &client_path,
                &Request::Hash {
                    vip: "sip".into(),
                    call_id: "abc".into(),
                },
            )
        });
        let mut connection = socket.accept().await.expect("a client");
        let received = connection.request().await.expect("a request");
        assert_eq!(
            received,
            Request::Hash {
                vip: "sip".into(),
                call_id: "abc".into()
            }
        );
        connection.answer(Ok("198.51.100.21:5060".into())).await;
        let answer = client.await.expect("the client").expect("an answer");
        assert_eq!(answer, Ok("198.51.100.21:5060".to_owned()));

        drop(socket);
        assert!(!path.exists(), "the socket is removed with the daemon");
        assert!(matches!(
            request(&path, &Request::Status),
            Err(ControlError::NotRunning(_))
        ));
        fs::remove_dir_all(&directory).expect("cleaning up");
    }
}
