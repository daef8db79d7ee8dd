//! Parsing option values, and printing sizes and times for people.
//!
//! A parser's error names the accepted form; clap adds the value and the option, so a bad value
//! reads as one line: `invalid value '10XB' for '--max-size <SIZE>': expected ...`.

use std::time::{Duration, SystemTime};

/// A size: a number with an optional unit. `MB`, `GB` are decimal (10^6, 10^9), `MiB`, `GiB`
/// binary (2^20, 2^30); a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.contains('.') && !text.chars().any(|c| c.is_ascii_alphabetic()) {
        // `1.5` with no unit is a fraction of a byte: surely a unit was forgotten.
        return Err(format!(
            "a size with a fraction needs a unit: {text} bytes is not a whole number of bytes; write {text}GB, {text}MiB, .."
        ));
    }
    parse_size::parse_size(text).map_err(|_| {
        "expected a size: a number with an optional unit, like 500MB, 1.5GB or 2GiB".to_owned()
    })
}

/// A count: a whole number.
pub fn parse_count(text: &str) -> Result<u64, String> {
    text.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| "expected a whole number of entries, like 10000".to_owned())
}

/// An age: a duration like `7d`, `12h`, `30min`, `2w` or `1h 30m`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| "expected an age: a number and a unit, like 7d, 12h, 30min or 2w".to_owned())
}

/// How long ago (or, for a time in the future, how long until) `at`, coarsely: `5s ago`,
/// `3min ago`, `2h ago`, `4d ago`, `in 6h`.
pub fn relative(at: SystemTime, now: SystemTime) -> String {
    match now.duration_since(at) {
        Ok(ago) => format!("{} ago", coarse(ago)),
        Err(until) => format!("in {}", coarse(until.duration())),
    }
}

fn coarse(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}min", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        86_400..31_536_000 => format!("{}d", s / 86_400),
        _ => format!("{}y", s / 31_536_000),
    }
}

/// A span of compute time, short: `-` for none, `850 µs`, `42 ms`, `3.4 s`, `12m 5s`, `3h 12m`,
/// `2d 4h`.
pub fn span(d: std::time::Duration) -> String {
    let us = d.as_micros();
    let secs = d.as_secs();
    match () {
        _ if us == 0 => "-".into(),
        _ if us < 1_000 => format!("{us} µs"),
        _ if us < 10_000 && !us.is_multiple_of(1_000) => format!("{:.1} ms", us as f64 / 1e3),
        _ if us < 1_000_000 => format!("{} ms", us / 1_000),
        _ if secs < 60 && d.subsec_micros() == 0 => format!("{secs} s"),
        _ if secs < 60 => format!("{:.1} s", d.as_secs_f64()),
        _ if secs < 3_600 => format!("{}m {}s", secs / 60, secs % 60),
        _ if secs < 86_400 => format!("{}h {}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// Milliseconds as JSON gives them: a float, to the microsecond.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

/// RFC 3339 in UTC with milliseconds, for JSON.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
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
    use super::*;

    #[test]
    fn sizes_are_decimal_or_binary_by_unit() {
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("10XB").unwrap_err().contains("500MB"));
        assert!(parse_size("-1MB").is_err());
        assert!(parse_size("1.5").unwrap_err().contains("needs a unit"));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
    }

    #[test]
    fn ages_take_short_units() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert!(parse_age("soon").unwrap_err().contains("7d"));
    }

    #[test]
    fn counts_and_times_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(parse_count("1_000"), Ok(1000));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(relative(now - Duration::from_secs(7_200), now), "2h ago");
        assert_eq!(relative(now + Duration::from_secs(90), now), "in 1min");
        assert_eq!(span(Duration::ZERO), "-");
        assert_eq!(span(Duration::from_micros(850)), "850 µs");
        assert_eq!(span(Duration::from_millis(42)), "42 ms");
        assert_eq!(span(Duration::from_millis(3_400)), "3.4 s");
        assert_eq!(span(Duration::from_secs(3 * 3600 + 12 * 60 + 5)), "3h 12m");
        assert_eq!(ms(Duration::from_micros(1_500)), 1.5);
    }
}
