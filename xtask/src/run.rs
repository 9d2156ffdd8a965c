//! Child processes. Every command that does work is echoed as `+ <command line>` before it
//! runs, inherits stdio (so cargo's and apt's progress stay visible), and a non-zero exit
//! becomes an error that names the command and its status. Presence checks (`dpkg-query`,
//! `rustup toolchain list`, `--version` calls) are the exception: they are silent probes, so
//! that a setup run with nothing to do prints only its "ok:" lines.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// A command to run, with the shell-like rendering of it that is printed and put in errors.
pub struct Cmd {
    command: Command,
    line: String,
}

impl Cmd {
    /// A command that runs `program`, found on `PATH`.
    pub fn new(program: &str) -> Self {
        Cmd {
            command: Command::new(program),
            line: quote(program),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        let arg = arg.as_ref();
        self.command.arg(arg);
        self.line.push(' ');
        self.line.push_str(&quote(arg));
        self
    }

    /// Appends several arguments.
    pub fn args<S: AsRef<str>>(self, args: impl IntoIterator<Item = S>) -> Self {
        args.into_iter().fold(self, Cmd::arg)
    }

    /// Sets an environment variable for the child (shown as `KEY=value` before the command).
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        let value = value.as_ref();
        self.command.env(key, value);
        self.line = format!("{key}={} {}", quote(&value.to_string_lossy()), self.line);
        self
    }

    /// Runs the child in `dir` instead of xtask's own working directory.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Echoes and runs the command with inherited stdio; fails unless it exits with 0.
    pub fn run(mut self) -> Result<()> {
        println!("+ {}", self.line);
        let status = self.command.status().map_err(|e| self.spawn_error(&e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::failed(format!("`{}` failed ({status})", self.line)))
        }
    }

    /// Echoes and runs the command, returning its stdout (stderr stays on the terminal);
    /// fails unless it exits with 0.
    pub fn read_stdout(mut self) -> Result<String> {
        println!("+ {}", self.line);
        let output = self
            .command
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| self.spawn_error(&e))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(Error::failed(format!(
                "`{}` failed ({})",
                self.line, output.status
            )))
        }
    }

    /// Runs the command silently as a presence check: its stdout if it could be started and
    /// exited with 0, `None` otherwise (a missing program counts as "not present").
    pub fn probe(mut self) -> Option<String> {
        let output = self
            .command
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Echoes and runs a best-effort command whose failure does not matter (its stderr is
    /// discarded, as with `2>/dev/null`).
    pub fn run_ignoring_failure(mut self) {
        println!("+ {} 2>/dev/null || true", self.line);
        let done = self.command.stderr(Stdio::null()).status();
        if !done.is_ok_and(|status| status.success()) {
            println!("  (failed; ignored)");
        }
    }

    fn spawn_error(&self, e: &std::io::Error) -> Error {
        Error::failed(format!("cannot run `{}`: {e}", self.line))
    }
}

/// Quotes `word` for display the way a POSIX shell would need it.
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_a_shell_would_split_or_expand() {
        assert_eq!(quote("--max_total_time=60"), "--max_total_time=60");
        assert_eq!(quote("${Status}"), "'${Status}'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn renders_env_and_args() {
        let cmd = Cmd::new("cargo").arg("+1.98.0").arg("a b").env("K", "v");
        assert_eq!(cmd.line, "K=v cargo +1.98.0 'a b'");
    }
}
