//! FHIR dates and dateTimes may be partial (`2024`, `2024-05`) and carry offsets. A partial date
//! is a period: these helpers give its first and last instants, so every rule can choose the
//! reading that is safe for it.

use fhir_sdk::{Date, DateTime};
use time::{Month, OffsetDateTime, Time, UtcOffset};

fn first_day(date: &Date) -> Option<time::Date> {
    match date {
        Date::Year(year) => time::Date::from_calendar_date(*year, Month::January, 1).ok(),
        Date::YearMonth(year, month) => time::Date::from_calendar_date(*year, *month, 1).ok(),
        Date::Date(date) => Some(*date),
    }
}

fn last_day(date: &Date) -> Option<time::Date> {
    match date {
        Date::Year(year) => time::Date::from_calendar_date(*year, Month::December, 31).ok(),
        Date::YearMonth(year, month) => {
            let days = time::util::days_in_month(*month, *year);
            time::Date::from_calendar_date(*year, *month, days).ok()
        }
        Date::Date(date) => Some(*date),
    }
}

/// The first instant the value may mean (dates without a zone are read as UTC).
pub fn earliest(value: &DateTime) -> Option<OffsetDateTime> {
    match value {
        DateTime::DateTime(instant) => Some(instant.0),
        DateTime::Date(date) => first_day(date).map(|d| d.with_time(Time::MIDNIGHT).assume_offset(UtcOffset::UTC)),
    }
}

/// The last instant the value may mean.
pub fn latest(value: &DateTime) -> Option<OffsetDateTime> {
    match value {
        DateTime::DateTime(instant) => Some(instant.0),
        DateTime::Date(date) => last_day(date)
            .and_then(|d| d.with_hms_nano(23, 59, 59, 999_999_999).ok())
            .map(|d| d.assume_offset(UtcOffset::UTC)),
    }
}

/// The calendar day to show for a value (its first day when partial).
pub fn day(value: &DateTime) -> Option<time::Date> {
    earliest(value).map(|instant| instant.to_offset(UtcOffset::UTC).date())
}

/// The instant `months` calendar months before `now`, the day clamped to that month's length
/// (10 months before 31 December is 28 or 29 February).
pub fn months_before(now: OffsetDateTime, months: u32) -> OffsetDateTime {
    let total = now.year() * 12 + i32::from(u8::from(now.month())) - 1 - i32::try_from(months).unwrap_or(i32::MAX / 2);
    let (year, month_index) = (total.div_euclid(12), total.rem_euclid(12));
    let Some(month) = u8::try_from(month_index + 1).ok().and_then(|m| Month::try_from(m).ok()) else {
        return now;
    };
    let day = now.day().min(time::util::days_in_month(month, year));
    time::Date::from_calendar_date(year, month, day).map_or(now, |date| now.replace_date(date))
}

/// Age in whole years on `today`, from a birth date (a partial one read as its first day).
pub fn age_in_years(birth: &Date, today: time::Date) -> Option<u32> {
    let born = first_day(birth)?;
    let mut years = today.year() - born.year();
    if (today.month() as u8, today.day()) < (born.month() as u8, born.day()) {
        years -= 1;
    }
    u32::try_from(years).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use time::macros::{date, datetime};

    #[test]
    fn a_year_only_date_spans_the_whole_year() {
        let value = DateTime::from_str("2024").expect("valid FHIR dateTime");
        assert_eq!(earliest(&value), Some(datetime!(2024-01-01 0:00 UTC)));
        assert_eq!(latest(&value).map(|t| t.date()), Some(date!(2024 - 12 - 31)));
    }

    #[test]
    fn a_month_only_date_ends_on_the_last_day_of_that_month() {
        let value = DateTime::from_str("2024-02").expect("valid FHIR dateTime");
        assert_eq!(latest(&value).map(|t| t.date()), Some(date!(2024 - 02 - 29)));
    }

    #[test]
    fn an_offset_is_kept() {
        let value = DateTime::from_str("2024-05-01T23:30:00+02:00").expect("valid FHIR dateTime");
        assert_eq!(earliest(&value), Some(datetime!(2024-05-01 21:30 UTC)));
    }

    #[test]
    fn months_are_counted_on_the_calendar_with_the_day_clamped() {
        assert_eq!(months_before(datetime!(2026-11-30 10:00 UTC), 10), datetime!(2026-01-30 10:00 UTC));
        assert_eq!(months_before(datetime!(2026-12-31 10:00 UTC), 10), datetime!(2026-02-28 10:00 UTC));
        assert_eq!(months_before(datetime!(2026-03-15 10:00 UTC), 10), datetime!(2025-05-15 10:00 UTC));
    }

    #[test]
    fn age_counts_whole_years_only() {
        let birth = Date::from_str("2008-11-25").expect("date");
        assert_eq!(age_in_years(&birth, date!(2026 - 11 - 24)), Some(17));
        assert_eq!(age_in_years(&birth, date!(2026 - 11 - 25)), Some(18));
        assert_eq!(age_in_years(&birth, date!(2000 - 01 - 01)), None);
    }
}
