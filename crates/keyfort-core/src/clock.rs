//! Time as an argument.
//!
//! Every rule about `iat`, `exp` and `nbf` takes the current time from a [`Clock`] so that tests
//! can pin it; nothing in the domain reads the system clock on its own.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, the unit of JWT `NumericDate` claims.
pub type UnixTime = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

/// The wall clock, for production.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
}

/// A clock that only moves when told to, for tests of time-dependent rules.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: UnixTime) -> Self {
        Self(AtomicI64::new(now))
    }

    pub fn set(&self, now: UnixTime) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// A Unix time as RFC 3339 in UTC (`2026-11-30T10:43:07Z`): how the audit trail shows
/// times to operators, whose tools (and `jq`, and log collectors) read that form.
pub fn format_rfc3339(at: UnixTime) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an RFC 3339 date-time (`2026-11-30T10:43:07Z`, `...+01:00`), or a bare date
/// (`2026-11-30`, midnight UTC), into a Unix time.
pub fn parse_rfc3339(text: &str) -> Result<UnixTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at.unix_timestamp());
    }
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, date_only).map(|d| d.midnight().assume_utc().unix_timestamp()).map_err(|_| {
        let shown: String = text.chars().take(64).collect();
        format!("\"{shown}\" is not an RFC 3339 date-time such as 2026-11-30T10:43:07Z (or a date such as 2026-11-30)")
    })
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        assert_eq!(format_rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
        assert_eq!(parse_rfc3339("2026-11-30T00:53:20Z"), Ok(1_796_000_000));
        assert_eq!(parse_rfc3339("2026-11-30T01:53:20+01:00"), Ok(1_796_000_000));
        assert_eq!(parse_rfc3339("2026-11-30"), Ok(1_795_996_800));
        assert!(parse_rfc3339("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_rfc3339("1796000000").is_err());
    }
}
