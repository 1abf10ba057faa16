//! The human form of `outpost status`.

use super::Snapshot;
use outpost_proto::text::printable;

/// The human form of `outpost status`. Every text that came from outside (names, revisions, errors quoting file
/// names) goes through [`printable`]: a terminal must never receive a control sequence from a repository.
pub fn render_table(snapshot: &Snapshot, now: u64) -> String {
    let short = |r: &Option<String>| {
        r.as_deref()
            .map(|r| printable(r).chars().take(12).collect::<String>())
            .unwrap_or_else(|| "-".into())
    };
    let ago = |t: Option<u64>| match t {
        Some(t) if t <= now => format!("{}s ago", now - t),
        Some(t) => format!("in {}s", t - now),
        None => "-".into(),
    };
    let mut out = format!(
        "agent {} ({})\n",
        printable(&snapshot.agent_id),
        match snapshot.daemon_pid {
            Some(pid) => format!("outpost run is running, pid {pid}"),
            None => "no daemon running; read from the store".into(),
        }
    );
    if let Some(depth) = snapshot.heartbeat_outbox {
        out.push_str(&format!(
            "heartbeat outbox: {depth} waiting to be sent to the hub\n"
        ));
    }
    if let Some(dropped) = snapshot.heartbeat_dropped.filter(|d| *d > 0) {
        out.push_str(&format!(
            "heartbeats dropped undelivered: {dropped} (outbox full or too old, or refused by the hub; the daemon's log says which)\n"
        ));
    }
    out.push_str(&format!(
        "{:<16} {:<12} {:<13} {:<13} {:<13} {:<8} {:<10} {}\n",
        "SOURCE", "STATE", "APPLIED", "LAST GOOD", "FETCHED", "OBJECTS", "SEEN", "NEXT POLL"
    ));
    for view in &snapshot.sources {
        let s = &view.status;
        out.push_str(&format!(
            "{:<16} {:<12} {:<13} {:<13} {:<13} {:<8} {:<10} {}\n",
            printable(&view.name),
            s.state.as_str(),
            short(&s.applied),
            short(&s.last_good),
            short(&s.fetched),
            s.object_count,
            ago(s.last_seen),
            ago(view.next_poll)
        ));
        if let Some(e) = &s.last_error {
            out.push_str(&format!("  error: {}\n", printable(e)));
        }
        if s.drift_corrected > 0 {
            out.push_str(&format!(
                "  drift corrected: {} objects\n",
                s.drift_corrected
            ));
        }
        for note in &s.notes {
            out.push_str(&format!("  note: {}\n", printable(note)));
        }
    }
    out
}
