//! The `confab` executable: tune the allocator, then hand over to the CLI.

fn main() -> std::process::ExitCode {
    tune_allocator();
    confab::cli::main()
}

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
