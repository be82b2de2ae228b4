//! The clinical thresholds and time windows of the rules, from `cds-hooks/rules.toml`: each a
//! typed key with its value and its source. The file is embedded at build time and checked when
//! loaded (every key present, none unknown, each value in its sane range), so the code and the
//! reviewable numbers cannot drift.

use serde::Deserialize;

/// One number of the rules, with where it comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold<T> {
    pub value: T,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Fever: a body temperature at or above this (°C).
    pub fever_celsius: Threshold<f64>,
    /// ... measured within this many hours.
    pub fever_window_hours: Threshold<i64>,
    /// Wells: DVT likely from this score.
    pub wells_likely_from: Threshold<i32>,
    /// Wells is not validated under this age (years).
    pub wells_not_validated_under_years: Threshold<u32>,
    /// A D-dimer counts for this many days.
    pub d_dimer_window_days: Threshold<i64>,
    /// The D-dimer cut-off, µg/L FEU.
    pub d_dimer_cutoff_feu_ug_per_l: Threshold<f64>,
    /// Over this age the cut-off is age-adjusted.
    pub d_dimer_age_adjusted_over_years: Threshold<u32>,
    /// The age-adjusted cut-off is age x this (µg/L FEU).
    pub d_dimer_age_factor_ug_per_l: Threshold<f64>,
    /// A pending venous duplex authored this recently is not suggested again.
    pub duplex_order_window_days: Threshold<i64>,
    /// A venous duplex completed this recently is named, and the duplex offered, not recommended.
    pub completed_duplex_window_days: Threshold<i64>,
    /// Major surgery within this many days scores a Wells point.
    pub major_surgery_window_days: Threshold<i64>,
    /// A pregnancy Condition whose onset is this recent counts.
    pub pregnancy_window_months: Threshold<u32>,
    /// Pain for this many weeks books an evaluation (and the tendon's window has passed).
    pub persisting_pain_weeks: Threshold<u32>,
    /// Nerve pain lasting more than this many weeks justifies a lumbar spine MRI.
    pub nerve_pain_imaging_after_weeks: Threshold<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThresholdsError {
    #[error("cds-hooks/rules.toml is not valid: {0}")]
    Invalid(#[from] toml::de::Error),
    #[error("cds-hooks/rules.toml: {key} = {value} is outside {range}")]
    OutOfRange { key: &'static str, value: String, range: &'static str },
}

const RULES_FILE: &str = include_str!("../../cds-hooks/rules.toml");

fn within<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    threshold: &Threshold<T>,
    low: T,
    high: T,
    range: &'static str,
) -> Result<(), ThresholdsError> {
    if threshold.value < low || threshold.value > high || threshold.source.trim().is_empty() {
        return Err(ThresholdsError::OutOfRange { key, value: threshold.value.to_string(), range });
    }
    Ok(())
}

impl Thresholds {
    /// Parses and checks a rules file.
    pub fn parse(text: &str) -> Result<Thresholds, ThresholdsError> {
        let t: Thresholds = toml::from_str(text)?;
        within("fever_celsius", &t.fever_celsius, 37.0, 40.0, "37.0..=40.0 with a source")?;
        within("fever_window_hours", &t.fever_window_hours, 1, 168, "1..=168 with a source")?;
        within("wells_likely_from", &t.wells_likely_from, 1, 9, "1..=9 with a source")?;
        within("wells_not_validated_under_years", &t.wells_not_validated_under_years, 0, 21, "0..=21 with a source")?;
        within("d_dimer_window_days", &t.d_dimer_window_days, 1, 30, "1..=30 with a source")?;
        within(
            "d_dimer_cutoff_feu_ug_per_l",
            &t.d_dimer_cutoff_feu_ug_per_l,
            100.0,
            1000.0,
            "100..=1000 with a source",
        )?;
        within(
            "d_dimer_age_adjusted_over_years",
            &t.d_dimer_age_adjusted_over_years,
            18,
            100,
            "18..=100 with a source",
        )?;
        within("d_dimer_age_factor_ug_per_l", &t.d_dimer_age_factor_ug_per_l, 1.0, 50.0, "1..=50 with a source")?;
        within("duplex_order_window_days", &t.duplex_order_window_days, 1, 60, "1..=60 with a source")?;
        within("completed_duplex_window_days", &t.completed_duplex_window_days, 1, 60, "1..=60 with a source")?;
        within("major_surgery_window_days", &t.major_surgery_window_days, 1, 365, "1..=365 with a source")?;
        within("pregnancy_window_months", &t.pregnancy_window_months, 1, 24, "1..=24 with a source")?;
        within("persisting_pain_weeks", &t.persisting_pain_weeks, 1, 52, "1..=52 with a source")?;
        within("nerve_pain_imaging_after_weeks", &t.nerve_pain_imaging_after_weeks, 1, 52, "1..=52 with a source")?;
        Ok(t)
    }

    /// The thresholds shipped with the service.
    pub fn embedded() -> Result<Thresholds, ThresholdsError> {
        Thresholds::parse(RULES_FILE)
    }

    /// The D-dimer cut-off (µg/L FEU) for a patient of this age, and whether it is age-adjusted.
    pub fn d_dimer_cutoff(&self, age_years: Option<u32>) -> (f64, bool) {
        match age_years {
            Some(age) if age > self.d_dimer_age_adjusted_over_years.value => {
                (f64::from(age) * self.d_dimer_age_factor_ug_per_l.value, true)
            }
            _ => (self.d_dimer_cutoff_feu_ug_per_l.value, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_thresholds_load_with_their_sources() {
        let t = Thresholds::embedded().expect("rules.toml is valid");
        assert_eq!(t.fever_celsius.value, 38.0);
        assert_eq!(t.major_surgery_window_days.value, 84);
        assert!(t.d_dimer_window_days.source.contains("section 6"));
    }

    #[test]
    fn the_d_dimer_cut_off_is_age_adjusted_over_fifty_only() {
        let t = Thresholds::embedded().expect("valid");
        assert_eq!(t.d_dimer_cutoff(Some(60)), (600.0, true));
        assert_eq!(t.d_dimer_cutoff(Some(50)), (500.0, false));
        assert_eq!(t.d_dimer_cutoff(None), (500.0, false));
    }

    #[test]
    fn a_missing_unknown_or_absurd_key_is_refused_naming_it() {
        let without_fever = RULES_FILE.replace("[fever_celsius]\nvalue = 38.0", "[fever_celsius]");
        assert!(Thresholds::parse(&without_fever).expect_err("refused").to_string().contains("value"));
        let unknown = format!("{RULES_FILE}\n[fever_fahrenheit]\nvalue = 100.4\nsource = \"x\"\n");
        assert!(Thresholds::parse(&unknown).expect_err("refused").to_string().contains("fever_fahrenheit"));
        let absurd = RULES_FILE.replace("value = 38.0", "value = 3.8");
        assert!(Thresholds::parse(&absurd).expect_err("refused").to_string().contains("fever_celsius"));
    }
}
