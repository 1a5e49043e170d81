//! The statistics a comparison reports: Wilson score intervals for pass rates, Fisher's exact
//! test for the difference between two pass rates, and nearest-rank percentiles.
//!
//! Written here rather than taken from a statistics crate: each is a few lines of textbook
//! arithmetic, and the crates that have them (statrs) bring a linear-algebra library along.
//! The tests check them against published reference values (R's `fisher.test` and
//! `prop.test(correct = FALSE)`-style Wilson bounds).

/// The 97.5th percentile of the standard normal distribution: two-sided 95% confidence.
const Z_95: f64 = 1.959_963_984_540_054;

/// The 95% Wilson score interval of `successes` out of `trials`: `(low, high)`. An empty
/// sample says nothing: `(0, 1)`.
pub fn wilson_interval(successes: u64, trials: u64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z_95 * Z_95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Fisher's exact test, two-sided, of the 2x2 table `[[a, b], [c, d]]` (rows: the two sides,
/// columns: passed, failed). The p-value sums the probabilities of every table with the same
/// margins that is no more likely than the observed one, as R's `fisher.test` does (with its
/// relative tolerance of 1e-7 for ties).
pub fn fisher_exact(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let row1 = a + b;
    let col1 = a + c;
    let n = a + b + c + d;
    if n == 0 {
        return 1.0;
    }
    let ln_factorial = LnFactorial::up_to(n);
    // P(X = x) for the hypergeometric count in the top-left cell, the margins fixed.
    let ln_p = |x: u64| {
        ln_factorial.of(row1) + ln_factorial.of(n - row1) + ln_factorial.of(col1) + ln_factorial.of(n - col1)
            - ln_factorial.of(n)
            - ln_factorial.of(x)
            - ln_factorial.of(row1 - x)
            - ln_factorial.of(col1 - x)
            - ln_factorial.of(n + x - row1 - col1)
    };
    let low = (row1 + col1).saturating_sub(n);
    let high = row1.min(col1);
    let observed = ln_p(a);
    let mut p_value = 0.0;
    for x in low..=high {
        let ln = ln_p(x);
        if ln <= observed + 1e-7_f64.ln_1p() {
            p_value += ln.exp();
        }
    }
    p_value.min(1.0)
}

/// `ln(k!)` for `k` up to a bound, as running sums.
struct LnFactorial(Vec<f64>);

impl LnFactorial {
    fn up_to(n: u64) -> Self {
        let mut sums = Vec::with_capacity(n as usize + 1);
        sums.push(0.0);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).ln();
            sums.push(sum);
        }
        Self(sums)
    }

    fn of(&self, k: u64) -> f64 {
        self.0[k as usize]
    }
}

/// The nearest-rank `percentile` (0 to 100) of `values`, which it sorts; 0 for none.
pub fn percentile(values: &mut [u64], percentile: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((percentile / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn wilson_bounds_match_reference_values() {
        // Reference: Newcombe (1998), Table I; and the closed form at p = 0.5.
        let (low, high) = wilson_interval(81, 263);
        assert!(close(low, 0.2553, 5e-5) && close(high, 0.3662, 5e-5), "{low} {high}");
        let (low, high) = wilson_interval(15, 148);
        assert!(close(low, 0.0624, 5e-5) && close(high, 0.1605, 5e-5), "{low} {high}");
        let (low, high) = wilson_interval(0, 20);
        assert!(close(low, 0.0, 1e-12) && close(high, 0.1611, 5e-5), "{low} {high}");
        let (low, high) = wilson_interval(5, 10);
        assert!(close(low, 0.2366, 5e-5) && close(high, 0.7634, 5e-5), "{low} {high}");
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
    }

    #[test]
    fn fisher_p_values_match_r() {
        // R: fisher.test(matrix(c(3, 1, 1, 3), 2))$p.value, Fisher's tea-tasting lady.
        assert!(close(fisher_exact(3, 1, 1, 3), 0.4857143, 1e-6));
        // R: fisher.test(matrix(c(1, 11, 9, 3), 2))$p.value (the dieting example on Wikipedia).
        assert!(close(fisher_exact(1, 9, 11, 3), 0.002759456, 1e-8));
        // R: fisher.test(matrix(c(10, 0, 0, 10), 2))$p.value
        assert!(close(fisher_exact(10, 0, 0, 10), 1.082509e-05, 1e-10));
        // Identical sides: nothing to see.
        assert!(close(fisher_exact(7, 3, 7, 3), 1.0, 1e-12));
        assert_eq!(fisher_exact(0, 0, 0, 0), 1.0);
    }

    #[test]
    fn fisher_is_symmetric_in_its_sides() {
        assert!(close(fisher_exact(2, 8, 9, 1), fisher_exact(9, 1, 2, 8), 1e-12));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values = vec![15, 20, 35, 40, 50];
        assert_eq!(percentile(&mut values, 50.0), 35);
        assert_eq!(percentile(&mut values, 95.0), 50);
        assert_eq!(percentile(&mut values, 0.0), 15);
        assert_eq!(percentile(&mut [], 50.0), 0);
    }
}
