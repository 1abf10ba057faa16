//! Giving freed heap memory back to the system, for the agent and the hub alike.
//!
//! glibc keeps the pages of freed memory mapped, per heap arena, until asked. Measured: after one 1,000-object
//! bundle an idle agent's RSS doubled; a hub reading its 10,000-agent fleet on tokio's blocking threads (one
//! arena each) went from 34 MiB to 318 MiB over a few dozen reads. Each calls this after such a peak, so it
//! keeps about one peak's worth. musl's allocator returns free pages by itself, so there this is a no-op.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim takes no pointers; it only returns the free pages of every arena to the kernel, and
    // glibc makes it thread-safe.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
