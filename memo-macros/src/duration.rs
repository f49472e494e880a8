//! Durations as `ttl` and `min_cost` take them: `"90s"`, `"1h30m"`,
//! `"50ms"`, parsed at compile time so a typo is an error at its literal.

/// The units, longest names first so `ms` is not read as `m` then `s`.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1_000),
    ("us", 1),
    ("µs", 1),
    ("s", 1_000_000),
    ("m", 60_000_000),
    ("h", 3_600_000_000),
    ("d", 86_400_000_000),
    ("w", 604_800_000_000),
];

/// Microseconds in `text`: numbers each followed by a unit, summed
/// (`"1h 30m"`); `None` if it is not one, or is zero or overflows.
pub(crate) fn micros(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let (unit, scale) = UNITS.iter().find(|(u, _)| rest.starts_with(u))?;
        rest = rest[unit.len()..].trim_start();
        total = total.checked_add(n.checked_mul(*scale)?)?;
    }
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::micros;

    #[test]
    fn durations_as_people_write_them() {
        assert_eq!(micros("50ms"), Some(50_000));
        assert_eq!(micros("90s"), Some(90_000_000));
        assert_eq!(micros("1h30m"), Some(5_400_000_000));
        assert_eq!(micros("1h 30m"), Some(5_400_000_000));
        assert_eq!(micros("2d"), Some(172_800_000_000));
        assert_eq!(micros("1w"), Some(604_800_000_000));
        assert_eq!(micros("250us"), Some(250));
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "-1s",
            "1.5h",
            "0s",
            "99999999999999999999s",
        ] {
            assert_eq!(micros(bad), None, "{bad}");
        }
    }
}
