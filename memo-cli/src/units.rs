//! Sizes and durations as people type and read them.

use std::time::{Duration, SystemTime};

/// A size: `20GiB`, `500M` (10^6), `1.5 KiB`, `1_000_000`, bytes (memo-core's
/// grammar, as `MEMO_MAX_BYTES`).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    memo_core::units::parse_size(s)
}

/// A duration: `30d`, `12h`, `1h 30m`, `1.5h`, `90s` (memo-core's grammar,
/// as `MEMO_MAX_AGE` and `ttl`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    memo_core::units::parse_duration(s)
}

/// A size for people: `1.2 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// A duration for people: to the millisecond below a minute, to the
/// second above.
pub(crate) fn duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let d = if d < Duration::from_secs(60) {
        Duration::from_millis(d.as_millis().max(1) as u64)
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(d).to_string()
}

/// How long ago `t` was: `3m ago`, `2days ago`.
pub(crate) fn ago(t: Option<SystemTime>) -> String {
    let Some(t) = t else { return "-".to_owned() };
    match SystemTime::now().duration_since(t) {
        Ok(d) if d.as_secs() < 1 => "just now".to_owned(),
        Ok(d) => {
            // The largest unit only: "3h ago", not "3h 2m 1s ago".
            let s = humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
            format!("{} ago", s.split(' ').next().unwrap_or(&s))
        }
        Err(_) => "just now".to_owned(),
    }
}

/// Unix seconds, for JSON.
pub(crate) fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// `n` entries, with the noun agreeing: `1 entry`, `1,234 entries`.
pub(crate) fn entries(n: u64) -> String {
    if n == 1 {
        "1 entry".to_owned()
    } else {
        format!("{} entries", count(n))
    }
}

/// A count with thousands separators: `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_agree_with_their_number() {
        assert_eq!(super::entries(1), "1 entry");
        assert_eq!(super::entries(0), "0 entries");
        assert_eq!(super::entries(1234), "1,234 entries");
    }

    use super::*;

    #[test]
    fn sizes_and_durations_as_typed() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500M"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(duration(Duration::from_micros(1500)), "1ms");
        assert_eq!(duration(Duration::from_millis(1250)), "1s 250ms");
        assert_eq!(duration(Duration::from_secs(3723)), "1h 2m 3s");
    }
}
