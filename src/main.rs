//! The `confab` executable: tune the allocator, raise the open-files limit,
//! then hand over to the CLI.

fn main() -> std::process::ExitCode {
    tune_allocator();
    raise_open_files_limit();
    confab::cli::main()
}

/// Every open answer stream holds two descriptors (the client's connection
/// and the upstream's), so 10,000 streams need more than 20,000: the usual
/// soft limit of 1024 would refuse connections after about 500. The soft
/// limit is raised to the hard one, which any process may do (systemd's
/// `LimitNOFILE=` in the packaged unit sets both).
#[cfg(unix)]
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit() {}

/// glibc raises its mmap threshold after the first large free, so the
/// 19 MiB argon2 buffers of later logins land in per-thread arenas and are
/// never returned: measured 247 MB RSS after 20 logins (benches/auth.rs)
/// against 12 MB with a fixed 1 MiB threshold. Two arenas are plenty for
/// an async server and keep fragmentation down.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called once,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
