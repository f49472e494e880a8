//! Sizes and durations as people write them in environment variables
//! (`MEMO_MAX_BYTES=10GiB`, `MEMO_MAX_AGE=30d`).

use std::time::Duration;

/// The number a text starts with, and the unit after it.
fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// A size: bytes, or a number with `K`, `M`, `G`, `T` (powers of 1000) or
/// `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024); `B` and case are optional.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (num, unit) = number_and_unit(text)?;
    let unit = unit.to_ascii_lowercase();
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
        _ => return None,
    };
    let bytes = num * scale;
    (0.0..1.8e19).contains(&bytes).then_some(bytes as u64)
}

/// A duration: a number with `s`, `m`, `h`, `d` or `w` (seconds without).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let (num, unit) = number_and_unit(text)?;
    let secs = match unit {
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(num * secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_as_people_write_them() {
        assert_eq!(parse_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_size("500M"), Some(500_000_000));
        assert_eq!(parse_size("1.5 KiB"), Some(1536));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2gb"), Some(2_000_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
    }
}
