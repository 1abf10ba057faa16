//! The units operators write in the config: durations (`30s`, `5m`, `1h30m`) and sizes (`8MiB`).

/// The duration syntax is shared with `outpost-hub`, so it lives in the crate both depend on.
pub use outpost_proto::units::parse_duration;

/// Sizes such as `8MiB`, `512KiB`, `1MB` or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor).filter(|v| *v > 0)
}
