//! systemd's readiness and watchdog protocol (sd_notify), spoken directly: one datagram to `$NOTIFY_SOCKET`.
//!
//! Why not the `sd-notify` crate: sd_notify(3) lets `$NOTIFY_SOCKET` name an abstract socket (`@...`, what
//! systemd hands a service in some setups, e.g. nested in a container), and sd-notify 0.5.0 (the newest, checked
//! 2026-12) connects to it as a file path, which fails. The protocol is one datagram; these 30 lines speak both.
//!
//! `READY=1` is sent once the store is open and every last good bundle is re-applied, so `systemctl start`
//! returns when the site runs its last good state, not before. `WATCHDOG=1` comes from a task on the same
//! runtime as everything else: if that runtime wedges, the pings stop and systemd restarts the agent. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::time::Duration;

/// Sends one state line (`READY=1`, `STOPPING=1`, `STATUS=...`); errors are logged, never fatal.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&path, state) {
        tracing::warn!("cannot notify systemd ({state}): {e}");
    }
}

fn send_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: systemd's default for services.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), std::path::Path::new(path))?;
    }
    Ok(())
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sends_a_datagram_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        super::send_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
