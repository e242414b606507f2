//! The ratios between phases of one run, judged on medians when phases ran in rounds.

use crate::bench::Bench;
use crate::db::Transport;

/// The median of some rates (the mean of the middle two for an even count).
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[m]),
        _ => Some((v[m - 1] + v[m]) / 2.0),
    }
}

/// `a / b` and how it reads in the table: "0.97 (medians 9,100 / 9,380)".
fn ratio(a: f64, b: f64, unit: &str) -> (f64, String) {
    (a / b, format!("{:.3} ({a:.0} / {b:.0} {unit})", a / b))
}

impl Bench {
    /// TLS ingest against the baseline's plain ingest, TLS against plain text (ingest,
    /// reported; drains, judged), switchyard's plain drain against
    /// graphile-worker, and each deeper queue against the smallest, from the medians of
    /// the rounds (each value listed, so the spread shows).
    pub(crate) fn same_run_ratios(&mut self, rounds: usize) {
        let section = if rounds > 1 {
            format!("same-run ratios (medians of {rounds} rounds)")
        } else {
            "same-run ratios".to_string()
        };
        let list = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        let plain = Some(Transport::Plain);
        let tls = Some(Transport::Tls);
        let mut lines: Vec<(String, String, &str, Option<bool>)> = Vec::new();

        let ingest = |t| self.ingest_rates.get(&t).map(Vec::as_slice).unwrap_or_default();
        // Issue 26's clause: this tree's TLS ingest not below the plain-text ingest of the
        // tree it was filed against (`--baseline-bin`), measured in the same rounds.
        let base = &self.baseline_ingest_rates;
        if let (Some(a), Some(b)) = (median(ingest(tls)), median(base)) {
            let (r, text) = ratio(a, b, "req/s");
            lines.push((
                "ingest TLS / baseline's plain".into(),
                format!("{text}; TLS {}, baseline plain {}", list(ingest(tls)), list(base)),
                "≥ 1.0",
                Some(r >= 1.0),
            ));
        }
        // What TLS itself costs this tree's ingest: reported, not judged.
        if let (Some(a), Some(b)) = (median(ingest(tls)), median(ingest(plain))) {
            let (_, text) = ratio(a, b, "req/s");
            lines.push((
                "ingest TLS / plain, this tree".into(),
                format!("{text}; TLS {}, plain {}", list(ingest(tls)), list(ingest(plain))),
                "",
                None,
            ));
        }

        let sizes: Vec<usize> = self.drain_rates.keys().map(|(_, n)| *n).collect();
        let smallest = sizes.iter().min().copied();
        let drains = |t, n| self.drain_rates.get(&(t, n)).map(Vec::as_slice).unwrap_or_default();
        for &n in sizes.iter().collect::<std::collections::BTreeSet<_>>() {
            if let (Some(a), Some(b)) = (median(drains(tls, n)), median(drains(plain, n))) {
                let (r, text) = ratio(a, b, "events/s");
                lines.push((
                    format!("drain {n}: TLS / plain"),
                    format!("{text}; TLS {}, plain {}", list(drains(tls, n)), list(drains(plain, n))),
                    "≥ 0.9",
                    Some(r >= 0.9),
                ));
            }
        }
        if let Some(k) = smallest {
            for (t, n) in self.drain_rates.keys().filter(|(_, n)| *n > k) {
                let over = t.map(|t| format!(" {}", t.label())).unwrap_or_default();
                if let (Some(a), Some(b)) = (median(drains(*t, *n)), median(drains(*t, k))) {
                    let (r, text) = ratio(a, b, "events/s");
                    lines.push((format!("drain {n} / drain {k}{over}"), text, "≥ 0.9", Some(r >= 0.9)));
                }
            }
            if let (Some(a), Some(b)) = (median(drains(plain, k)), median(&self.graphile_rates)) {
                let (r, text) = ratio(a, b, "per s");
                lines.push((
                    format!("drain {k}: switchyard plain / graphile-worker"),
                    format!("{text}; graphile-worker {}", list(&self.graphile_rates)),
                    "≥ 1.0",
                    Some(r >= 1.0),
                ));
            }
        }
        if !lines.is_empty() {
            println!("\n[{section}]");
        }
        for (figure, value, target, pass) in lines {
            self.report.check(&section, &figure, value, target, pass);
        }
    }
}
