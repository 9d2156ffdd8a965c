//! Running external commands (mostly `ip`) with their stderr kept in the error.
//!
//! iproute2 is the reference tool for namespaces, links and addresses; driving it keeps the
//! harness small and makes every step reproducible by hand from the error message.

use std::process::{Command, ExitStatus, Output, Stdio};

use thiserror::Error;

/// A command that could not be started or did not exit successfully.
#[derive(Debug, Error)]
pub enum CmdError {
    #[error("starting `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

impl CmdError {
    /// The command's stderr when it ran and failed, for callers that tolerate known failures.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            CmdError::Failed { stderr, .. } => Some(stderr),
            CmdError::Spawn { .. } => None,
        }
    }
}

/// A shell-like rendering of `cmd` for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion with stdin closed; a non-zero exit is an error carrying stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, CmdError> {
    let command = describe(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CmdError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CmdError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip ARGS...` in the caller's network namespace (the root namespace for the harness).
pub(crate) fn ip(args: &[&str]) -> Result<Output, CmdError> {
    run(Command::new("ip").args(args))
}

/// Runs `ip -n NETNS ARGS...`: iproute2 switches into the named namespace itself.
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<Output, CmdError> {
    run(Command::new("ip").arg("-n").arg(netns).args(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_stderr_and_command() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("oops"), "{text}");
        assert_eq!(err.stderr(), Some("oops"));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&mut Command::new("/nonexistent/sipxdp-tool")).unwrap_err();
        assert!(matches!(err, CmdError::Spawn { .. }), "{err}");
    }
}
