//! Sizes and durations as people write them: one grammar for the
//! environment (`MEMO_MAX_BYTES=20GiB`, `MEMO_MAX_AGE="1h 30m"`), the
//! attribute's literals (`ttl = "1.5h"`, checked at compile time by this
//! same file: memo-macros includes it), the `memo` command's options and
//! the Python package.
//!
//! - A **size** is a number with an optional unit: bytes (`4096`, `4096B`),
//!   `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` (powers of 1000) or `KiB`,
//!   `MiB`, `GiB`, `TiB` (powers of 1024), in any case, with optional spaces
//!   and `_` between digits: `20GiB`, `500M`, `1.5 KiB`, `1_000_000`.
//! - A **duration** is one or more numbers each followed by a unit, summed:
//!   `us` (or `µs`), `ms`, `s`, `m` (or `min`), `h`, `d`, `w`; a number may
//!   have a fraction: `90s`, `1h 30m`, `1h30m`, `1.5h`, `250ms`, `30d`. A
//!   number alone is seconds (`90`).
//!
//! No dependency beyond `std`, so the macro crate can build it too.

use std::time::Duration;

/// A size in bytes.
///
/// # Errors
///
/// The text is not a size (the message says what one looks like), or it
/// is more than `u64::MAX` bytes.
///
/// # Examples
///
/// ```
/// use memo_core::units::parse_size;
///
/// assert_eq!(parse_size("20GiB"), Ok(20 << 30));
/// assert_eq!(parse_size("500M"), Ok(500_000_000));
/// assert_eq!(parse_size("1_000_000"), Ok(1_000_000));
/// assert!(parse_size("lots").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size: a number with an optional unit, e.g. 20GiB, 500M, 1.5KiB, 4096"
        )
    };
    let (num, rest) = number(text.trim()).ok_or_else(bad)?;
    let unit = rest.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = (num * scale).round();
    if (0.0..1.8e19).contains(&bytes) {
        Ok(bytes as u64)
    } else {
        Err(format!("{text:?} is too large a size"))
    }
}

/// The units of a duration, longest names first so `ms` is not read as
/// `m` then `s`, and `min` not as `m` then `in`.
const UNITS: &[(&str, f64)] = &[
    ("min", 60.0),
    ("ms", 1e-3),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
    ("w", 604_800.0),
];

/// A duration.
///
/// # Errors
///
/// The text is not a duration (the message says what one looks like), or
/// it is too long to represent.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use memo_core::units::parse_duration;
///
/// assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: numbers with units (us, ms, s, m, h, d, w), e.g. 90s, 1h 30m, 1.5h, 250ms, 30d"
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    // A number alone is seconds.
    if let Some((n, tail)) = number(rest)
        && tail.trim().is_empty()
    {
        return Duration::try_from_secs_f64(n).map_err(|_| bad());
    }
    let mut secs = 0.0_f64;
    while !rest.is_empty() {
        let (n, tail) = number(rest).ok_or_else(bad)?;
        let tail = tail.trim_start();
        let (unit, scale) = UNITS
            .iter()
            .find(|(u, _)| tail.starts_with(u))
            .ok_or_else(bad)?;
        let after = &tail[unit.len()..];
        // `1hour` is not `1h` followed by `our`.
        if after.starts_with(|c: char| c.is_alphabetic()) {
            return Err(bad());
        }
        secs += n * scale;
        rest = after.trim_start();
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is too long a duration"))
}

/// The number `text` starts with (digits with `_` between them, and an
/// optional fraction), and the text after it.
fn number(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let digits = &text[..end];
    if !digits.starts_with(|c: char| c.is_ascii_digit()) || digits.ends_with('_') {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    Some((clean.parse().ok()?, &text[end..]))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, parse_size};

    /// The one table of the grammar: every user of it (environment,
    /// attribute, command, Python) reads these the same way.
    #[test]
    fn sizes_and_durations_as_people_write_them() {
        for (text, bytes) in [
            ("20GiB", Some(20_u64 << 30)),
            ("500M", Some(500_000_000)),
            ("1_000_000", Some(1_000_000)),
            ("1.5 KiB", Some(1536)),
            ("4096", Some(4096)),
            ("4096B", Some(4096)),
            ("2gb", Some(2_000_000_000)),
            ("10 MiB", Some(10 << 20)),
            ("lots", None),
            ("-1", None),
            ("", None),
            ("GiB", None),
            ("1_", None),
            ("5 parsecs", None),
        ] {
            assert_eq!(parse_size(text).ok(), bytes, "{text:?}");
        }
        let s = |n: u64| Some(Duration::from_secs(n));
        for (text, d) in [
            ("90s", s(90)),
            ("90", s(90)),
            ("1h 30m", s(5400)),
            ("1h30m", s(5400)),
            ("1.5h", s(5400)),
            ("250ms", Some(Duration::from_millis(250))),
            ("250us", Some(Duration::from_micros(250))),
            ("30d", s(30 * 86_400)),
            ("2w", s(14 * 86_400)),
            ("5min", s(300)),
            ("0s", s(0)),
            ("1 hour", None),
            ("soon", None),
            ("h", None),
            ("1x", None),
            ("-1s", None),
            ("", None),
            ("1h 30", None),
        ] {
            assert_eq!(parse_duration(text).ok(), d, "{text:?}");
        }
        assert!(parse_size("lots").unwrap_err().contains("20GiB"));
        assert!(parse_duration("soon").unwrap_err().contains("1h 30m"));
    }
}
