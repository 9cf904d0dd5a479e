//! Human durations in rules: `30s`, `10m`, `1h30m`, `2d`, `500ms`.

use std::time::Duration;

pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let err = || format!("{input:?} is not a duration (use e.g. 30s, 10m, 1h30m)");
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
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
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
            .ok_or_else(err)?;
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
}
