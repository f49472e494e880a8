//! Durations as `ttl` and `min_cost` take them, parsed at compile time so
//! a typo is an error at its literal. The grammar is memo-core's
//! (`memo-core/src/units.rs`, built into this crate as `units`), so the
//! attribute, the environment and the `memo` command read a duration the
//! same way; a literal in code must also name its unit and not be zero.

/// Microseconds in `text`; `None` if it is not a duration, names no unit
/// (`"90"`), or is zero.
pub(crate) fn micros(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let d = crate::units::parse_duration(t).ok()?;
    u64::try_from(d.as_micros()).ok().filter(|&us| us > 0)
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
        assert_eq!(micros("1.5h"), Some(5_400_000_000));
        assert_eq!(micros("2d"), Some(172_800_000_000));
        assert_eq!(micros("1w"), Some(604_800_000_000));
        assert_eq!(micros("250us"), Some(250));
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "-1s",
            "0s",
            "1 hour",
            "99999999999999999999999s",
        ] {
            assert_eq!(micros(bad), None, "{bad}");
        }
    }
}
