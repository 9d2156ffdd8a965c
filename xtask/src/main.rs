//! `cargo xtask`: the single entry point of sipxdp (setup, build, test, lab, bench, fuzz).
//!
//! It must compile with the stable Rust that a fresh machine has (1.95) and has no
//! dependencies, so that the first `cargo xtask` on a new clone cannot fail before it has
//! installed the pinned toolchains; everything else is then built with those pins.

mod error;
mod run;
mod setup;
mod tasks;
mod toolchains;
mod vm;
mod workspace;

use std::env;
use std::process::ExitCode;

use error::{Error, Result};
use workspace::Workspace;

const USAGE: &str = "\
Usage: cargo xtask <command> [args...]

Commands:
  setup            install what this machine lacks (Debian packages, the pinned Rust
                   toolchains, bpf-linker); does nothing when all is present
  build            setup, then build the workspace in release mode
  test [args...]   setup, then `cargo fmt --check`, clippy, and the test suite;
                   args go to `cargo test` (e.g. a filter, or `-- --nocapture`)
  demo [--keep]    setup, build, then run the lab demo (`sipxdp-lab demo`)
  lab <args...>    setup, build, then run `sipxdp-lab <args...>` (e.g. `lab up`)
  bench [args...]  setup, build, then run `sipxdp-bench <args...>` (`--e2e`: the lab
                   benchmark against Kamailio's dispatcher, see docs/benchmarks.md)
  fuzz [SECONDS]   setup, then run every fuzz target for SECONDS each (default 60)
  vm-test          setup, then boot Debian 12's kernel (6.1) under qemu and check that
                   the program loads, passes a test frame, attaches and forwards there
  help             print this help (also -h, --help)

The toolchain pins are read from [workspace.metadata.sipxdp] in the root Cargo.toml.";

/// Seconds each fuzz target runs when `fuzz` gets no argument.
const DEFAULT_FUZZ_SECONDS: u64 = 60;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    Help,
    Setup,
    Build,
    Test(Vec<String>),
    Lab(Vec<String>),
    Bench(Vec<String>),
    Fuzz(u64),
    VmTest,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if let Error::Usage(_) = error {
                eprintln!("\n{USAGE}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}

fn run() -> Result<()> {
    let args = env::args_os()
        .skip(1)
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| Error::Usage(format!("argument {arg:?} is not valid UTF-8")))
        })
        .collect::<Result<Vec<_>>>()?;
    match parse(&args)? {
        Task::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Task::VmTest => vm::vm_test(&Workspace::locate()?),
        Task::Setup => setup::setup(&Workspace::locate()?),
        Task::Build => tasks::build(&Workspace::locate()?),
        Task::Test(args) => tasks::test(&Workspace::locate()?, &args),
        Task::Lab(args) => tasks::lab(&Workspace::locate()?, &args),
        Task::Bench(args) => tasks::bench(&Workspace::locate()?, &args),
        Task::Fuzz(seconds) => tasks::fuzz(&Workspace::locate()?, seconds),
    }
}

/// Turns the arguments after `cargo xtask` into a task.
fn parse(args: &[String]) -> Result<Task> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Error::Usage("no command given".into()));
    };
    let is_help = |arg: &String| matches!(arg.as_str(), "-h" | "--help");
    // Commands without pass-through arguments accept only `--help`.
    let no_args = |task: Task| match rest {
        [] => Ok(task),
        [arg] if is_help(arg) => Ok(Task::Help),
        _ => Err(Error::Usage(format!(
            "`{command}` takes no arguments, got `{}`",
            rest.join(" ")
        ))),
    };
    match command.as_str() {
        "help" | "-h" | "--help" => Ok(Task::Help),
        "setup" => no_args(Task::Setup),
        "build" => no_args(Task::Build),
        "vm-test" => no_args(Task::VmTest),
        "test" => Ok(Task::Test(rest.to_vec())),
        "bench" => Ok(Task::Bench(rest.to_vec())),
        "lab" if rest.is_empty() => Err(Error::Usage(
            "`lab` needs arguments for sipxdp-lab, e.g. `cargo xtask lab up`".into(),
        )),
        "lab" => Ok(Task::Lab(rest.to_vec())),
        "demo" => match rest {
            [] => Ok(Task::Lab(vec!["demo".into()])),
            [keep] if keep == "--keep" => Ok(Task::Lab(vec!["demo".into(), keep.clone()])),
            [arg] if is_help(arg) => Ok(Task::Help),
            _ => Err(Error::Usage(format!(
                "`demo` takes only `--keep`, got `{}`",
                rest.join(" ")
            ))),
        },
        "fuzz" => match rest {
            [] => Ok(Task::Fuzz(DEFAULT_FUZZ_SECONDS)),
            [arg] if is_help(arg) => Ok(Task::Help),
            [seconds] => match seconds.parse::<u64>() {
                Ok(seconds) if seconds > 0 => Ok(Task::Fuzz(seconds)),
                _ => Err(Error::Usage(format!(
                    "fuzz SECONDS must be a positive whole number, got `{seconds}`"
                ))),
            },
            _ => Err(Error::Usage(format!(
                "`fuzz` takes at most one argument (SECONDS), got `{}`",
                rest.join(" ")
            ))),
        },
        other => Err(Error::Usage(format!("unknown command `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Task> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse_line("setup").ok(), Some(Task::Setup));
        assert_eq!(parse_line("build --help").ok(), Some(Task::Help));
        assert_eq!(
            parse_line("test -- --nocapture").ok(),
            Some(Task::Test(vec!["--".into(), "--nocapture".into()]))
        );
        assert_eq!(
            parse_line("demo --keep").ok(),
            Some(Task::Lab(vec!["demo".into(), "--keep".into()]))
        );
        assert_eq!(
            parse_line("lab up").ok(),
            Some(Task::Lab(vec!["up".into()]))
        );
        assert_eq!(parse_line("bench").ok(), Some(Task::Bench(vec![])));
        assert_eq!(
            parse_line("fuzz").ok(),
            Some(Task::Fuzz(DEFAULT_FUZZ_SECONDS))
        );
        assert_eq!(parse_line("fuzz 5").ok(), Some(Task::Fuzz(5)));
        assert_eq!(parse_line("vm-test").ok(), Some(Task::VmTest));
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for line in [
            "",
            "frobnicate",
            "setup now",
            "demo --stay",
            "fuzz 0",
            "fuzz x",
            "lab",
        ] {
            assert!(
                matches!(parse_line(line), Err(Error::Usage(_))),
                "`{line}` should be a usage error"
            );
        }
    }
}
