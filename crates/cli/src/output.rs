//! What every command prints with: tables, JSON lines, progress bars and time arguments.

use chrono::{DateTime, NaiveDate, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

/// A table with a header row, fitted to the terminal when there is one.
pub fn table<I: IntoIterator<Item = &'static str>>(header: I) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.into_iter().collect::<Vec<_>>());
    table
}

/// Writes one JSON document as one line.
pub fn json_line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// A progress bar on stderr over global positions up to `len`, named `what`; its message
/// carries the rate. indicatif hides it when stderr is not a terminal, so logs and pipes stay
/// clean.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:<10} [{bar:30}] position {pos}/{len} {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A moment given on the command line: RFC 3339 (`2026-01-31T12:00:00Z`), a date
/// (`2026-01-31`, midnight UTC), or an age before now (`90s`, `15m`, `2h`, `7d`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Ok(moment.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (amount, unit) = text.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    match amount.parse::<i64>() {
        Ok(amount) if seconds > 0 => Ok(Utc::now() - chrono::Duration::seconds(amount.saturating_mul(seconds))),
        _ => Err(format!(
            "{text:?} is not a time: give RFC 3339 (2026-01-31T12:00:00Z), a date (2026-01-31) or an age (15m, 2h, 7d)"
        )),
    }
}

pub fn time(moment: &DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn optional<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(T::to_string).unwrap_or_else(|| "-".to_owned())
}

/// Events per second over `elapsed`, for summaries.
pub fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_dates_or_ages() {
        assert_eq!(
            parse_time("2026-01-31T12:00:00+01:00").unwrap().to_rfc3339(),
            "2026-01-31T11:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-01-31").unwrap().to_rfc3339(),
            "2026-01-31T00:00:00+00:00"
        );
        let age = Utc::now() - parse_time("2h").unwrap();
        assert!((age.num_seconds() - 7_200).abs() < 5);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("5").is_err());
    }
}
