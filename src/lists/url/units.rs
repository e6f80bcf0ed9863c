//! The two unit-bearing settings of URL lists: `refresh` (a duration such as `"24h"`) and
//! `max_size` (a byte count such as `"64MiB"`).
//!
//! Small hand-written parsers rather than a crate: the accepted forms are few and the error
//! messages name exactly what is wrong, for `path:line:col` diagnostics.

use std::time::Duration;

/// A value that does not parse, said in words for a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// Not of the accepted shape.
    #[error(
        "`{value}` is not a duration: write a number and a unit, e.g. \"30s\", \"15m\", \"24h\", \"1d\" or \"1h30m\""
    )]
    Duration {
        /// The text given.
        value: String,
    },
    /// Shorter than the floor.
    #[error("`{value}` is too short: the shortest refresh is 1s")]
    TooShort {
        /// The text given.
        value: String,
    },
    /// Not a size.
    #[error(
        "`{value}` is not a size: write a number of bytes or a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. \"64MiB\""
    )]
    Size {
        /// The text given.
        value: String,
    },
}

/// Parses a refresh interval: one or more `<number><unit>` groups, unit `s`, `m`, `h`, `d`
/// (24 hours) or `w`, optionally separated by spaces (`"1h30m"`, `"1d 12h"`). At least 1s.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let bad = || UnitError::Duration {
        value: text.to_owned(),
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let secs_per = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(secs_per)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        rest = rest[unit_len..].trim_start();
    }
    if total == 0 {
        return Err(UnitError::TooShort {
            value: text.to_owned(),
        });
    }
    Ok(Duration::from_secs(total))
}

/// Parses a byte size: a number with an optional unit (`B`, decimal `KB` `MB` `GB`, binary
/// `KiB` `MiB` `GiB`; letter case is ignored, a space before the unit is allowed).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let bad = || UnitError::Size {
        value: text.to_owned(),
    };
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let factor: u64 = match t[digits..].trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_and_combined() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("24h"), Ok(86_400));
        assert_eq!(secs("1d"), Ok(86_400));
        assert_eq!(secs("2w"), Ok(14 * 86_400));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs(" 1d 12h "), Ok(129_600));
        assert_eq!(secs("1s"), Ok(1));
    }

    #[test]
    fn durations_without_a_unit_or_with_a_wrong_one_are_rejected() {
        for bad in [
            "",
            "24",
            "h",
            "1.5h",
            "10 ms",
            "1y",
            "-1h",
            "1h-",
            "5 minutes",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(UnitError::Duration { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("0s"),
            Err(UnitError::TooShort { .. })
        ));
        // Overflow is an error, not a wrap-around.
        assert!(parse_duration("99999999999999999999w").is_err());
        assert!(parse_duration("9999999999999999w").is_err());
    }

    #[test]
    fn sizes_in_decimal_and_binary_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("2 KiB"), Ok(2048));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in ["", "MiB", "1.5MiB", "10 pages", "-1", "99999999999999GiB"] {
            assert!(
                matches!(parse_size(bad), Err(UnitError::Size { .. })),
                "{bad}"
            );
        }
    }
}
