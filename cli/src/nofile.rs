//! The open-file limit: a process that opens thousands of sockets (the server, the
//! soak's clients) raises its soft limit to the hard one first.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns `(soft, hard)` as they are
/// afterwards.
pub(crate) fn raise() -> std::io::Result<(u64, u64)> {
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    rlimit::increase_nofile_limit(hard)?;
    rlimit::Resource::NOFILE.get()
}

/// Whether `sockets` sockets fit under `soft` besides the few descriptors every process
/// holds (standard streams, pollers, wakers, a listener).
pub(crate) fn fits(sockets: u64, soft: u64) -> bool {
    sockets + 64 <= soft
}
