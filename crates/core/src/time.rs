//! Time as a plain value. The core never reads a clock; callers pass `now`.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). Persisted as an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_ms(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// `self + delay_ms`, saturating instead of overflowing.
    pub fn plus_ms(self, delay_ms: u64) -> Self {
        let delay = i64::try_from(delay_ms).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(delay))
    }

    /// Milliseconds from `earlier` to `self`; negative if `earlier` is later.
    pub fn ms_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses an RFC 3339 timestamp with any UTC offset (`2026-11-18T11:06:40.123Z`,
    /// `2026-11-18T11:06:40+01:00`); digits below the millisecond are dropped.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        let at: jiff::Timestamp = text.trim().parse().map_err(|e| format!("{text:?} is not an RFC 3339 timestamp: {e}"))?;
        Ok(Timestamp(at.as_millisecond()))
    }

    /// As a `jiff` timestamp; beyond jiff's range (-9999-01-02T01:59:59Z to
    /// 9999-12-30T22:00:00.999Z), its nearest end.
    fn to_jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0).unwrap_or(if self.0 < 0 { jiff::Timestamp::MIN } else { jiff::Timestamp::MAX })
    }
}

impl std::fmt::Display for Timestamp {
    /// RFC 3339 in UTC with millisecond precision (`2026-11-18T11:06:40.123Z`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.to_jiff())
    }
}

/// Parses a duration written for people: one or more `<integer><unit>` parts,
/// units `ms`, `s`, `m`, `h`, `d` (`500ms`, `30s`, `10m`, `1h30m`, `2d`).
///
/// Hand-written on purpose: jiff's friendly duration format (`SignedDuration`'s
/// `FromStr`) accepts much more than this grammar (fractions like `1.5s`, a sign,
/// spaces, long unit names, `ago`, ISO 8601 `PT1H`) and rejects parts out of
/// order (`30m1h`), so using it would change what configuration files and the
/// API accept, and still need this grammar checked first.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let what = || format!("{text:?} is not a duration; write e.g. 500ms, 30s, 10m, 1h30m or 2d");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(what());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(what());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| what())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(what()),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(factor).and_then(|v| total.checked_add(v)).ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    Ok(total)
}

/// Formats a duration in milliseconds for people: `750ms`, `1.5s`, `2m05s`, `3h00m`.
/// Ours rather than jiff's friendly printer: two units at most, the second
/// zero-padded, which that printer does not do.
pub fn human_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{s:.1}s") }
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else if ms < 86_400_000 {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    } else {
        format!("{}d{:02}h", ms / 86_400_000, (ms % 86_400_000) / 3_600_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Timestamp::from_unix_ms(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_unix_ms(1_795_000_000_123).to_string(), "2026-11-18T11:06:40.123Z");
        assert_eq!(Timestamp::from_unix_ms(951_825_600_000).to_string(), "2000-02-29T12:00:00.000Z");
        assert_eq!(Timestamp::from_unix_ms(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::from_unix_ms(253_402_207_200_999).to_string(), "9999-12-30T22:00:00.999Z");
        // Beyond jiff's range: its nearest end.
        assert_eq!(Timestamp::from_unix_ms(253_402_207_201_000).to_string(), "9999-12-30T22:00:00.999Z");
        assert_eq!(Timestamp::from_unix_ms(i64::MAX).to_string(), "9999-12-30T22:00:00.999Z");
        assert_eq!(Timestamp::from_unix_ms(i64::MIN).to_string(), "-009999-01-02T01:59:59.000Z");
    }

    #[test]
    fn parses_rfc3339() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).map(Timestamp::unix_ms);
        assert_eq!(t("2026-11-18T11:06:40.123Z"), Ok(1_795_000_000_123));
        assert_eq!(t("2026-11-18T11:06:40Z"), Ok(1_795_000_000_000));
        assert_eq!(t("2026-11-18T11:06:40.5+00:00"), Ok(1_795_000_000_500));
        assert_eq!(t("2026-11-18T12:06:40.123456+01:00"), Ok(1_795_000_000_123));
        assert_eq!(t("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(t("2026-11-18t11:06:40z"), Ok(1_795_000_000_000));
        assert_eq!(t("2026-11-18 11:06:40Z"), Ok(1_795_000_000_000));
        for bad in ["", "yesterday", "2026-13-18T11:06:40Z", "2026-11-18T11:06:40", "2026-11-18"] {
            assert!(t(bad).is_err(), "{bad:?}");
        }
        assert!(t("soon").unwrap_err().contains("\"soon\" is not an RFC 3339 timestamp"));
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_round_trips(ms in jiff::Timestamp::MIN.as_millisecond()..=jiff::Timestamp::MAX.as_millisecond()) {
            let t = Timestamp::from_unix_ms(ms);
            proptest::prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        for bad in ["", "10", "m", "1x", "1.5s", "-1s", "s10"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration_ms(500), "500ms");
        assert_eq!(human_duration_ms(1500), "1.5s");
        assert_eq!(human_duration_ms(2000), "2s");
        assert_eq!(human_duration_ms(125_000), "2m05s");
        assert_eq!(human_duration_ms(3_600_000), "1h00m");
    }
}
