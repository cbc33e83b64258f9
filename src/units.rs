//! Units for people: sizes with binary suffixes, durations and times,
//! parsed and formatted. A leaf: the records, the config, driverOpts and
//! the CLI share it.

use std::time::Duration;

/// Parses a size with binary units: `512M`, `10G`, `1Ti`, `4096`, `2GiB`.
pub fn parse_size(value: &str) -> std::result::Result<u64, String> {
    let usage = "expected a size such as 512M, 10G or 1T (binary units)";
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    // `split` stops at the first non-digit, so `num` is digits only (no
    // sign can slip through to the parser).
    let num: u64 = num.parse().map_err(|_| usage.to_string())?;
    let unit = unit.trim_end_matches(['B', 'b']).trim_end_matches('i');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => return Err(usage.to_string()),
    };
    let bytes = num.checked_mul(1u64 << shift).ok_or_else(|| "it is too large".to_string())?;
    if bytes == 0 {
        return Err("it must be larger than zero".to_string());
    }
    Ok(bytes)
}

/// Bytes in binary units for people: `512 B`, `1.5 GiB`.
pub fn human_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{x:.1} {}", units[u]) }
}

/// A float (a rate, an estimate) as a whole number, rounded toward zero.
/// Rust's float-to-integer cast saturates: negative or NaN gives 0, too
/// large gives `u64::MAX`, which is what every caller wants.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the saturating cast is the conversion"
)]
pub fn whole(x: f64) -> u64 {
    x as u64
}

/// Formats bytes with the largest binary unit that divides them.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Parses `24h`, `30m`, `90s`, `7d`, `1h30m`, `0s`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let usage = || format!("{s:?} is not a duration; expected e.g. 24h, 30m, 7d or 0s");
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| usage())?;
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(usage()),
        };
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(usage)?;
        num.clear();
    }
    if !num.is_empty() || s.trim().is_empty() {
        return Err(usage());
    }
    Ok(Duration::from_secs(total))
}

/// Seconds as the shortest duration text `parse_duration` reads back
/// (`90` → `1m30s`). Days start at two, so that a day reads `24h` as the
/// configuration reference writes it (`48h` → `2d`).
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, n) in [('d', 86400), ('h', 3600), ('m', 60), ('s', 1)] {
        if rest >= n && (unit != 'd' || rest >= 2 * n) {
            out.push_str(&format!("{}{unit}", rest / n));
            rest %= n;
        }
    }
    out
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC), always with
/// three fractional digits: the admin API filters and sorts dates as
/// text, and only a fixed width makes text order time order (`…:01Z`
/// and `…:01.5Z` would sort after `…:01.75Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Now, in milliseconds since the epoch (the records' timestamps).
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10Gi"), Ok(10 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999P").is_err());
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("").is_err());
        for secs in [0, 1, 90, 3600, 86400 + 61] {
            assert_eq!(parse_duration(&format_duration(secs)).unwrap().as_secs(), secs);
        }
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(86400), "24h", "a day as the docs write it");
        assert_eq!(format_duration(36 * 3600), "36h");
        assert_eq!(format_duration(7 * 86400), "7d");
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds_whose_text_order_is_time_order() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339_ms(1_795_656_141_175), "2026-11-26T01:22:21.175Z");
        let times = [1_000, 1_500, 1_750, 1_751, 2_000, 61_000];
        let texts: Vec<String> = times.iter().map(|t| rfc3339_ms(*t)).collect();
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
        for t in &texts {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }
}
