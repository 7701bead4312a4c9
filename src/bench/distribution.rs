//! The whole latency distribution of a bench: percentile bars for a terminal, and HdrHistogram's
//! percentile distribution text for its plotters.

use std::fmt::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::report::Latency;

/// Nanoseconds per millisecond: the unit of the percentile distribution text, as HdrHistogram's
/// own log processor writes it (and its plotter's axis reads).
const NANOS_PER_MS: f64 = 1_000_000.0;

/// Quantile steps per halving of the distance to 100 %, as HdrHistogram writes by default.
const TICKS_PER_HALF: u32 = 5;

/// The percentiles the bars show.
const BARS: [(&str, f64); 6] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999), ("max", 1.0)];

/// The latency of every line (message, datagram) of a bench, kept in an HdrHistogram of
/// nanoseconds to three significant digits, from 1 ns to an hour.
///
/// [`BenchReport::latency_us`](super::BenchReport::latency_us) holds five of its percentiles;
/// this is for a closer look: [`Distribution::bars`] draws it for a terminal, and
/// [`Distribution::percentile_text`] writes it for HdrHistogram's plotters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::bench::Distribution;
///
/// let mut latency = Distribution::default();
/// for us in 1..=100 {
///     latency.record(Duration::from_micros(us));
/// }
/// assert_eq!(latency.len(), 100);
/// assert_eq!(latency.value_at_quantile(0.5).as_micros(), 50); // to three significant digits
/// ```
#[derive(Clone, PartialEq)]
pub struct Distribution {
    histogram: Histogram<u64>,
}

impl Distribution {
    /// Counts one latency (to the nanosecond; beyond an hour as an hour).
    ///
    /// ```
    /// let mut latency = smol_echo::bench::Distribution::default();
    /// latency.record(std::time::Duration::from_millis(3));
    /// assert!(!latency.is_empty());
    /// ```
    pub fn record(&mut self, latency: Duration) {
        self.histogram.saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The percentiles the report gives, in microseconds.
    pub(crate) fn latency_us(&self) -> Latency {
        let us = |quantile| self.histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Latency {
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: self.histogram.max() as f64 / 1000.0,
        }
    }

    /// The latencies counted.
    ///
    /// ```
    /// assert_eq!(smol_echo::bench::Distribution::default().len(), 0);
    /// ```
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// No latency was counted.
    ///
    /// ```
    /// assert!(smol_echo::bench::Distribution::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The latency at `quantile` (0.0 to 1.0; 1.0 is the slowest), to three significant digits;
    /// zero when empty.
    ///
    /// ```
    /// let mut latency = smol_echo::bench::Distribution::default();
    /// latency.record(std::time::Duration::from_micros(250));
    /// assert_eq!(latency.value_at_quantile(1.0).as_micros(), 250);
    /// ```
    pub fn value_at_quantile(&self, quantile: f64) -> Duration {
        Duration::from_nanos(self.histogram.value_at_quantile(quantile))
    }

    /// The distribution in the text of HdrHistogram's `outputPercentileDistribution`: columns
    /// `Value`, `Percentile`, `TotalCount`, `1/(1-Percentile)` at five steps per halving of the
    /// distance to 100 %, then the `#[Mean ...]`, `#[Max ...]` and `#[Buckets ...]` footer.
    /// Values are in milliseconds, as HdrHistogram's log processor writes them by default and
    /// its plotter expects, with three decimals.
    ///
    /// ```
    /// let mut latency = smol_echo::bench::Distribution::default();
    /// latency.record(std::time::Duration::from_micros(1500));
    /// let text = latency.percentile_text();
    /// assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    /// assert!(text.contains("       1.500 1.000000000000          1\n"));
    /// assert!(text.contains("#[Max     =        1.500, Total count    =            1]\n"));
    /// ```
    pub fn percentile_text(&self) -> String {
        let mut text = String::new();
        self.write_percentiles(&mut text).expect("a String takes every write");
        text
    }

    fn write_percentiles(&self, out: &mut String) -> fmt::Result {
        let h = &self.histogram;
        writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        )?;
        let mut total = 0;
        for step in h.iter_quantiles(TICKS_PER_HALF) {
            total += step.count_since_last_iteration();
            let (value, quantile) =
                (step.value_iterated_to() as f64 / NANOS_PER_MS, step.quantile_iterated_to());
            // The last step, at 100 %, has no finite 1/(1-Percentile).
            if quantile < 1.0 {
                writeln!(out, "{value:12.3} {quantile:2.12} {total:10} {:14.2}", 1.0 / (1.0 - quantile))?;
            } else {
                writeln!(out, "{value:12.3} {quantile:2.12} {total:10}")?;
            }
        }
        let (mean, deviation) = (h.mean() / NANOS_PER_MS, h.stdev() / NANOS_PER_MS);
        let max = if h.is_empty() { 0.0 } else { h.max() as f64 / NANOS_PER_MS };
        writeln!(out, "#[Mean    = {mean:12.3}, StdDeviation   = {deviation:12.3}]")?;
        writeln!(out, "#[Max     = {max:12.3}, Total count    = {:12}]", h.len())?;
        // HdrHistogram's sub-buckets: the power of two that holds 2 x 10^digits.
        let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
        writeln!(out, "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]", h.buckets())
    }

    /// The percentiles p50, p90, p99, p99.9, p99.99 and max as bars, one line each, in `width`
    /// columns (at least 40 are used): a label, the latency in µs, and a bar to scale, the
    /// slowest line filling the width, in eighths of a column. Empty when nothing was counted.
    ///
    /// ```
    /// let mut latency = smol_echo::bench::Distribution::default();
    /// latency.record(std::time::Duration::from_micros(100));
    /// latency.record(std::time::Duration::from_micros(400));
    /// let bars = latency.bars(60);
    /// assert_eq!(bars.lines().count(), 6);
    /// assert!(bars.lines().all(|line| line.chars().count() <= 60));
    /// assert!(bars.starts_with("  p50    100.0 µs  ██████████▎\n"), "{bars}");
    /// ```
    pub fn bars(&self, width: usize) -> String {
        if self.is_empty() {
            return String::new();
        }
        let values: Vec<(&str, f64)> = BARS
            .iter()
            .map(|&(label, quantile)| (label, self.histogram.value_at_quantile(quantile) as f64 / 1000.0))
            .collect();
        let max = values.iter().map(|&(_, us)| us).fold(0.0, f64::max);
        let digits = format!("{max:.1}").len();
        // "  p99.99 " + value + " µs  " + the bar.
        let room = width.max(40) - (2 + 7 + digits + 5);
        let mut out = String::new();
        for (label, us) in values {
            let eighths = if max > 0.0 { (us / max * (room * 8) as f64).round() as usize } else { 0 };
            let bar = bar(eighths.max(1));
            writeln!(out, "  {label:<7}{us:>digits$.1} µs  {bar}").expect("a String takes every write");
        }
        out
    }
}

/// A bar `eighths` eighths of a column long: full blocks, then one partial block.
fn bar(eighths: usize) -> String {
    const PARTIAL: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let mut bar = "█".repeat(eighths / 8);
    if let partial @ 1.. = eighths % 8 {
        bar.push(PARTIAL[partial]);
    }
    bar
}

impl Default for Distribution {
    fn default() -> Self {
        // Nanoseconds up to an hour: fixed size, never resized.
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds");
        Distribution { histogram }
    }
}

impl fmt::Debug for Distribution {
    /// The counts and extremes, not the thousands of buckets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Distribution")
            .field("len", &self.len())
            .field("min", &self.value_at_quantile(0.0))
            .field("max", &self.value_at_quantile(1.0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1..=10000 µs, one each.
    fn uniform() -> Distribution {
        let mut latency = Distribution::default();
        (1..=10_000).for_each(|us| latency.record(Duration::from_micros(us)));
        latency
    }

    #[test]
    fn bars_are_to_scale_and_fit_the_width() {
        let bars = uniform().bars(80);
        let lines: Vec<&str> = bars.lines().collect();
        let labels: Vec<&str> = lines.iter().map(|line| line.split_whitespace().next().unwrap()).collect();
        assert_eq!(labels, ["p50", "p90", "p99", "p99.9", "p99.99", "max"]);
        assert!(lines.iter().all(|line| line.chars().count() <= 80), "{bars}");
        let length = |line: &str| line.chars().filter(|c| "█▏▎▍▌▋▊▉".contains(*c)).count();
        // The max fills the width; p50 is half of it, within a column.
        assert_eq!(lines[5].chars().count(), 80, "{bars}");
        let (half, full) = (length(lines[0]), length(lines[5]));
        assert!(half.abs_diff(full / 2) <= 1, "{bars}");
        assert!(lines[0].starts_with("  p50     5001.2 µs  █"), "{bars}");
        assert!(lines.windows(2).all(|pair| length(pair[0]) <= length(pair[1])), "{bars}");
    }

    #[test]
    fn a_narrow_or_unknown_terminal_still_gets_bars_and_an_empty_run_none() {
        assert!(uniform().bars(0).lines().all(|line| line.chars().count() <= 40 && line.contains('█')));
        assert_eq!(Distribution::default().bars(80), "");
        // Even the smallest value shows.
        let mut skewed = Distribution::default();
        skewed.record(Duration::from_nanos(10));
        skewed.record(Duration::from_secs(10));
        assert!(skewed.bars(80).lines().all(|line| line.ends_with(['█', '▏', '▎', '▍', '▌', '▋', '▊', '▉'])));
    }

    #[test]
    fn the_percentile_text_has_hdrhistograms_shape() {
        let text = uniform().percentile_text();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<&str>> = lines
            .clone()
            .take_while(|line| !line.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        // Every row but the last has four columns; the last is at 100 % with all the count.
        let (last, steps) = rows.split_last().unwrap();
        assert!(steps.iter().all(|row| row.len() == 4), "{text}");
        assert_eq!(last[1..], ["1.000000000000", "10000"]);
        assert_eq!(last[0], "10.002");
        // Value (ms), percentile and count climb; 1/(1-p) matches the percentile.
        let column = |i: usize| steps.iter().map(move |row| row[i].parse::<f64>().unwrap());
        for i in 0..3 {
            let values: Vec<f64> = column(i).collect();
            assert!(values.windows(2).all(|pair| pair[0] <= pair[1]), "column {i}: {text}");
        }
        assert!(column(1).zip(column(3)).all(|(p, inverse)| (1.0 / (1.0 - p) - inverse).abs() < 0.01));
        assert!(steps.iter().any(|row| row[..3] == ["5.001", "0.500000000000", "5001"]), "{text}");
        assert!(steps.len() > 50, "{} steps", steps.len());
        assert_eq!(steps[0], ["0.001", "0.000000000000", "1", "1.00"]);
        let footer: Vec<&str> = text.lines().filter(|line| line.starts_with("#[")).collect();
        assert_eq!(footer.len(), 3, "{text}");
        assert!(footer[0].starts_with("#[Mean    =        5.001, StdDeviation   =        2.887]"), "{text}");
        assert_eq!(footer[1], "#[Max     =       10.002, Total count    =        10000]");
        assert!(footer[2].ends_with("SubBuckets     =         2048]"), "{text}");
    }
}
