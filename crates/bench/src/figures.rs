//! Percentiles and the printed report.

use std::time::Duration;

pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank].as_secs_f64() * 1000.0
}

pub struct Report {
    json: bool,
    rows: Vec<(String, f64, String)>,
}

impl Report {
    pub fn new(json: bool) -> Self {
        Self { json, rows: vec![] }
    }

    /// Records and immediately prints a figure, so a long run shows progress.
    pub fn figure(&mut self, metric: &str, value: f64, unit: &str) {
        let value = (value * 1000.0).round() / 1000.0;
        if self.json {
            println!(
                "{}",
                serde_json::json!({ "metric": metric, "value": value, "unit": unit })
            );
        } else {
            println!("{metric:<36} {value:>14.3} {unit}");
        }
        self.rows.push((metric.to_owned(), value, unit.to_owned()));
    }

    pub fn note(&self, message: &str) {
        if !self.json {
            println!("# {message}");
        } else {
            eprintln!("# {message}");
        }
    }

    pub fn finish(self) {
        if !self.json {
            println!("# {} figures", self.rows.len());
        }
    }
}
