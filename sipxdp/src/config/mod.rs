//! The configuration file: TOML, documented key by key in `docs/sipxdp.example.toml` and
//! in [`model`].
//!
//! Loading is strict because the file decides where traffic goes: it must be owned by root
//! or the daemon's user and not writable by anyone else, unknown keys are errors (a typo
//! must not silently leave a default in force), and every value is checked before the
//! daemon touches the kernel. Problems are reported as `origin:line:column: message`, all of
//! them at once where possible, so that one run shows everything to fix.
//!
//! The pieces: `parse` reads TOML into raw structs; `validate`, `vips` and `flood` check them and
//! apply the defaults, with `fields` and `values` for single values; `problems` locates and
//! collects what is wrong; `file` reads the file safely; `environment` is what all this
//! asks of the machine.

mod environment;
mod fields;
mod file;
mod flood;
pub mod model;
mod parse;
mod problems;
mod validate;
mod values;
mod vips;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use environment::{Environment, SystemEnvironment};
pub use model::*;
pub use problems::{ConfigErrors, Problem};

/// Loads the configuration file at `path`: refuses it unless it is owned by root or the
/// current user and not writable by group or others, then [`parse`]s it with the path as
/// origin.
///
/// # Errors
///
/// Every problem found, each located in the file (or concerning the whole file).
pub fn load(path: &Path, env: &dyn Environment) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = file::read(path, env)
        .map_err(|error| ConfigErrors::whole_file(&origin, error.to_string()))?;
    parse(&text, &origin, env)
}

/// Parses and validates the configuration `text`; `origin` names it in problems (usually
/// the file's path). Interface names are looked up through `env`.
///
/// Total: any text gives either a configuration or problems, never a panic.
///
/// # Errors
///
/// A TOML syntax error, a value of the wrong type, a missing required key or an unknown
/// key: that one problem. Otherwise every problem validation finds.
pub fn parse(text: &str, origin: &str, env: &dyn Environment) -> Result<Config, ConfigErrors> {
    let raw = parse::from_toml(text, origin)?;
    let mut problems = problems::Problems::new(origin, text);
    let config = validate::config(&raw, env, &mut problems);
    problems.finish(config)
}
