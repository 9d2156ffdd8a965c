//! What loading a configuration asks of the machine it runs on. Behind a trait so that tests
//! can check interface names and file permissions without network namespaces or `chown`.

use std::{ffi::CString, fs, io, os::unix::fs::MetadataExt as _, path::Path};

/// The machine a configuration is loaded on.
pub trait Environment {
    /// The index of the network interface `name` in the current network namespace, or
    /// `None` if there is no such interface.
    fn interface_index(&self, name: &str) -> Option<u32>;

    /// The owner's uid and the mode (`st_mode`: file type and permission bits) of the file
    /// at `path`, following symbolic links.
    fn file_owner_and_mode(&self, path: &Path) -> io::Result<(u32, u32)>;

    /// The effective uid of this process.
    fn current_uid(&self) -> u32;
}

/// The real machine, in the network namespace of the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn interface_index(&self, name: &str) -> Option<u32> {
        // A name with a NUL byte cannot name an interface.
        let name = CString::new(name).ok()?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        (index != 0).then_some(index)
    }

    fn file_owner_and_mode(&self, path: &Path) -> io::Result<(u32, u32)> {
        let metadata = fs::metadata(path)?;
        Ok((metadata.uid(), metadata.mode()))
    }

    fn current_uid(&self) -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_environment_knows_loopback() {
        assert!(SystemEnvironment.interface_index("lo").is_some());
        assert_eq!(SystemEnvironment.interface_index("no-such-if0"), None);
        assert_eq!(SystemEnvironment.interface_index("lo\0"), None);
    }

    #[test]
    fn a_new_file_belongs_to_the_current_user() {
        let path = std::env::temp_dir().join(format!("sipxdp-env-test-{}", std::process::id()));
        fs::write(&path, "").unwrap();
        let owner_and_mode = SystemEnvironment.file_owner_and_mode(&path);
        fs::remove_file(&path).unwrap();
        let (owner, mode) = owner_and_mode.unwrap();
        assert_eq!(owner, SystemEnvironment.current_uid());
        assert_eq!(mode & libc::S_IFMT, libc::S_IFREG);
    }
}
