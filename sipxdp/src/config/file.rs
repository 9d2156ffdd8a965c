//! Reading the configuration file, refusing one that someone other than its trusted owner
//! could have written: the file decides where traffic goes.

use std::{fs, io, path::Path};

use thiserror::Error;

use super::Environment;

/// The permission bits that let group or others write.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// Why the file was not read.
#[derive(Debug, Error)]
pub(super) enum FileError {
    #[error("cannot inspect the configuration file: {0}")]
    Inspect(io::Error),
    #[error(
        "refusing a configuration file that group or others can write (mode {mode:04o}): \
         it decides where traffic goes; run `chmod go-w` on it"
    )]
    Writable { mode: u32 },
    #[error(
        "refusing a configuration file owned by uid {owner}: it decides where traffic goes, \
         so it must belong to root or to the user running sipxdp (uid {current})"
    )]
    Owner { owner: u32, current: u32 },
    #[error("cannot read the configuration file: {0}")]
    Read(io::Error),
}

/// The text of the file at `path`, once `env` shows it is owned by root or the current
/// user and not writable by group or others.
pub(super) fn read(path: &Path, env: &dyn Environment) -> Result<String, FileError> {
    let (owner, mode) = env.file_owner_and_mode(path).map_err(FileError::Inspect)?;
    if mode & WRITABLE_BY_OTHERS != 0 {
        return Err(FileError::Writable {
            mode: mode & 0o7777,
        });
    }
    let current = env.current_uid();
    if owner != 0 && owner != current {
        return Err(FileError::Owner { owner, current });
    }
    fs::read_to_string(path).map_err(FileError::Read)
}
