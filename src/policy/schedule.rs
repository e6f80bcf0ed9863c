//! Policy schedules (SPEC §2 `schedule`): a policy is active only inside its day's time
//! ranges, read in a named time zone. "24:00" ends a day; a day not named is inactive.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

use crate::config::ScheduleConfig;

/// A compiled schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: TimeZone,
    tz_name: String,
    /// Minute ranges `[start, end)` per day, Monday first.
    days: [Vec<(u16, u16)>; 7],
}

/// Why a schedule did not compile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The time zone name is not in the time zone database.
    #[error("unknown time zone `{0}`")]
    UnknownTimeZone(String),
    /// A range is not `HH:MM-HH:MM` with start before end.
    #[error(
        "bad time range `{range}` for {day}: expected HH:MM-HH:MM with the start before the end (24:00 ends a day)"
    )]
    BadRange {
        /// The day key.
        day: &'static str,
        /// The text.
        range: String,
    },
}

fn parse_time(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn parse_day(day: &'static str, text: Option<&str>) -> Result<Vec<(u16, u16)>, Error> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut ranges = Vec::new();
    for range in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let bad = || Error::BadRange {
            day,
            range: range.to_owned(),
        };
        let (a, b) = range.split_once('-').ok_or_else(bad)?;
        let (a, b) = (
            parse_time(a).ok_or_else(bad)?,
            parse_time(b).ok_or_else(bad)?,
        );
        if a >= b {
            return Err(bad());
        }
        ranges.push((a, b));
    }
    Ok(ranges)
}

impl Schedule {
    /// Compiles a schedule.
    pub fn from_config(cfg: &ScheduleConfig) -> Result<Self, Error> {
        let tz_name = cfg.time_zone.clone().unwrap_or_else(|| "UTC".to_owned());
        let tz = TimeZone::get(&tz_name).map_err(|_| Error::UnknownTimeZone(tz_name.clone()))?;
        let days = [
            parse_day("mon", cfg.mon.as_deref())?,
            parse_day("tue", cfg.tue.as_deref())?,
            parse_day("wed", cfg.wed.as_deref())?,
            parse_day("thu", cfg.thu.as_deref())?,
            parse_day("fri", cfg.fri.as_deref())?,
            parse_day("sat", cfg.sat.as_deref())?,
            parse_day("sun", cfg.sun.as_deref())?,
        ];
        Ok(Self { tz, tz_name, days })
    }

    /// Whether the schedule is active at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        let dt = self.tz.to_datetime(now);
        let day = match dt.weekday() {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        };
        let minute = dt.hour() as u16 * 60 + dt.minute() as u16;
        self.days[day]
            .iter()
            .any(|&(a, b)| a <= minute && minute < b)
    }

    /// The time zone's name.
    pub fn time_zone(&self) -> &str {
        &self.tz_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(tz: &str, mon: &str) -> Schedule {
        Schedule::from_config(&ScheduleConfig {
            time_zone: Some(tz.into()),
            mon: Some(mon.into()),
            tue: None,
            wed: None,
            thu: None,
            fri: None,
            sat: None,
            sun: Some("00:00-24:00".into()),
        })
        .unwrap()
    }

    #[test]
    fn active_only_inside_ranges_in_its_time_zone() {
        let s = sched("Asia/Tokyo", "08:00-12:00,13:00-17:00");
        // Monday 2026-11-23 09:30 in Tokyo is 00:30 UTC.
        assert!(s.is_active("2026-11-23T00:30:00Z".parse().unwrap()));
        // 12:30 Tokyo: the lunch gap.
        assert!(!s.is_active("2026-11-23T03:30:00Z".parse().unwrap()));
        // 16:59 Tokyo active, 17:00 not (end is exclusive).
        assert!(s.is_active("2026-11-23T07:59:00Z".parse().unwrap()));
        assert!(!s.is_active("2026-11-23T08:00:00Z".parse().unwrap()));
        // Tuesday: no ranges.
        assert!(!s.is_active("2026-11-24T00:30:00Z".parse().unwrap()));
        // Sunday 23:59 Tokyo, covered by 00:00-24:00.
        assert!(s.is_active("2026-11-22T14:59:00Z".parse().unwrap()));
    }

    #[test]
    fn bad_ranges_and_zones_are_errors() {
        let cfg = |tz: &str, mon: &str| ScheduleConfig {
            time_zone: Some(tz.into()),
            mon: Some(mon.into()),
            tue: None,
            wed: None,
            thu: None,
            fri: None,
            sat: None,
            sun: None,
        };
        assert!(matches!(
            Schedule::from_config(&cfg("Mars/Base", "08:00-09:00")),
            Err(Error::UnknownTimeZone(_))
        ));
        for bad in [
            "08:00",
            "09:00-08:00",
            "25:00-26:00",
            "8-9",
            "08:00-24:01",
            "08:60-09:00",
        ] {
            assert!(Schedule::from_config(&cfg("UTC", bad)).is_err(), "{bad}");
        }
        assert!(Schedule::from_config(&cfg("UTC", "")).is_ok());
    }
}
