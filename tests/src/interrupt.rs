//! Tearing the labs down when a harness binary (`sipxdp-bench`, `sipxdp-lab`) is told to
//! stop. SIGINT, SIGTERM or SIGHUP would otherwise end it without running its guards: its
//! namespaces, with the daemons, Kamailios and XDP programs in them, would live on, and
//! so would the programs and maps its daemons pinned. The handler only writes the
//! signal's number to a pipe (`write` is async-signal-safe); a thread reading the pipe
//! removes this process's namespaces, killing what runs in them, then its daemons' pins,
//! and exits.

use std::{
    fs::File,
    io::{self, Read as _},
    os::fd::FromRawFd as _,
    sync::atomic::{AtomicI32, Ordering},
};

use anyhow::{Context as _, ensure};

use crate::{daemon_lab::remove_pins_of, netns::remove_own_namespaces};

/// The signals that end a harness run.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The pipe's write end, for the handler.
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let byte = signal as u8;
    // SAFETY: write(2) is async-signal-safe, the byte lives on this stack frame, and the
    // pipe stays open for the life of the process.
    unsafe { libc::write(PIPE.load(Ordering::Relaxed), (&raw const byte).cast(), 1) };
}

/// From now on, SIGINT, SIGTERM and SIGHUP remove this process's namespaces and end it
/// with status 128 + the signal's number. Call it once, first thing in `main`; a handler
/// installed later for one of these signals (Ctrl-C while a lab is explored) takes over
/// that signal.
///
/// # Errors
///
/// The pipe, the thread or a handler could not be set up.
pub fn tear_down_on_signal() -> anyhow::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new file descriptors into the array.
    let created = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    ensure!(
        created == 0,
        "creating a pipe: {}",
        io::Error::last_os_error()
    );
    // SAFETY: a new descriptor that nothing else owns.
    let mut reader = unsafe { File::from_raw_fd(fds[0]) };
    PIPE.store(fds[1], Ordering::Relaxed);
    std::thread::Builder::new()
        .name("teardown".into())
        .spawn(move || {
            let mut signal = [0u8];
            if reader.read_exact(&mut signal).is_err() {
                return;
            }
            eprintln!("signal {}: removing the lab", signal[0]);
            match remove_own_namespaces() {
                Ok(removed) => eprintln!("removed {} namespaces", removed.len()),
                Err(err) => eprintln!("removing the lab's namespaces: {err}"),
            }
            let own = std::process::id();
            eprintln!(
                "removed {} pin directories",
                remove_pins_of(|pid| pid == own).len()
            );
            std::process::exit(128 + i32::from(signal[0]));
        })
        .context("starting the teardown thread")?;
    for signal in SIGNALS {
        // SAFETY: the handler only writes to a pipe, which is async-signal-safe.
        let previous = unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
        ensure!(
            previous != libc::SIG_ERR,
            "installing the handler of signal {signal}"
        );
    }
    Ok(())
}
