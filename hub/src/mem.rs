//! Giving the memory of a fleet read back to the system.
//!
//! A fleet read (the fleet page, `/metrics`, `GET /v1/agents`) decodes every agent's last heartbeat: about
//! 40 MB held for 100 ms at 10,000 agents. It runs on a thread of tokio's blocking pool, and glibc gives each
//! such thread its own heap arena and keeps the freed pages of each mapped: measured with
//! `benches/fleet_page.rs`, the hub's RSS went from 34 MiB to 318 MiB over a few dozen reads, a few arenas'
//! worth of one read each. Asking glibc to return free pages after each read keeps it near one read's worth.
//! musl's allocator returns them by itself, so there this is a no-op.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim takes no pointers; it only returns free heap pages of every arena to the kernel,
    // and glibc makes it thread-safe.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
