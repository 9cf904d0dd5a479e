//! Human durations in rules: `30s`, `10m`, `1h30m`, `2d`, `500ms`.

use std::time::Duration;

/// The longest duration a rule may give (100 years): far beyond any sensible
/// cooldown or window, and small enough that arithmetic on millisecond clocks
/// (`now - window`, `as i64`) can never overflow.
pub const MAX_MS: u64 = 100 * 365 * 86_400_000;

pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let err = || format!("{input:?} is not a duration (use e.g. 30s, 10m, 1h30m)");
    let too_long = || format!("{input:?} is too long a duration (at most 36500d)");
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        // Only digits: parsing fails on overflow alone.
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms_per = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(ms_per)
            .and_then(|v| total.checked_add(v))
            .filter(|t| *t <= MAX_MS)
            .ok_or_else(too_long)?;
    }
    Ok(Duration::from_millis(total))
}

/// `3 per 1h`: at most 3 actions in any 1h window.
pub fn parse_rate(input: &str) -> Result<(u32, Duration), String> {
    let err = || format!("{input:?} is not a rate (use e.g. \"3 per 1h\")");
    let (n, window) = input.split_once(" per ").ok_or_else(err)?;
    let n: u32 = n.trim().parse().map_err(|_| err())?;
    if n == 0 {
        return Err(format!("{input:?}: the limit must be at least 1"));
    }
    Ok((n, parse(window)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "10", "m", "10x", "1.5h", "-1s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("3 per 1h"), Ok((3, Duration::from_secs(3600))));
        assert!(parse_rate("0 per 1h").is_err());
        assert!(parse_rate("3/h").is_err());
    }

    #[test]
    fn durations_too_long_for_millisecond_clocks_are_errors_naming_the_value() {
        for long in [
            "9999999999999999999h",
            "99999999999999999999s",
            "18446744073709551615ms",
            "9223372036854775807ms",
            "36501d",
            "36500d1ms",
        ] {
            let err = parse(long).unwrap_err();
            assert!(err.contains(&format!("{long:?}")), "{long}: {err}");
            assert!(parse_rate(&format!("3 per {long}")).is_err(), "{long}");
        }
        assert_eq!(parse("36500d"), Ok(Duration::from_millis(MAX_MS)));
    }
}
