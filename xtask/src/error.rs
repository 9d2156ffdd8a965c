//! The one error type of xtask. There is no `anyhow` here (xtask must build on a bare stable
//! toolchain with no dependencies), so errors are plain messages that already carry their
//! context, plus a kind that decides the exit code.

use std::fmt;

/// Why a command did not succeed; `main` prints it and maps it to an exit code.
#[derive(Debug)]
pub enum Error {
    /// Something went wrong while doing the work (exit code 1).
    Failed(String),
    /// The command line was not understood (exit code 2, usage is printed).
    Usage(String),
}

/// `Result` with xtask's error type as the default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failure described by `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(message.into())
    }

    /// Prefixes a failure with what xtask was trying to do, e.g. "installing bpf-linker 0.13.0".
    pub fn context(self, doing: impl fmt::Display) -> Self {
        match self {
            Error::Failed(message) => Error::Failed(format!("{doing}: {message}")),
            other => other,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Failed(_) => 1,
            Error::Usage(_) => 2,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failed(message) | Error::Usage(message) => f.write_str(message),
        }
    }
}
