//! The final table: one line per figure, printed as it is measured and as markdown at the end.

use std::collections::BTreeMap;

/// One line of the final table.
pub(crate) struct Line {
    pub(crate) section: String,
    pub(crate) figure: String,
    pub(crate) value: String,
    pub(crate) target: String,
    pub(crate) pass: Option<bool>,
}

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) lines: Vec<Line>,
    pub(crate) peak_rss_kib: BTreeMap<String, u64>,
}

impl Report {
    pub(crate) fn add(&mut self, section: &str, figure: &str, value: impl Into<String>) {
        self.check(section, figure, value, "", None);
    }

    pub(crate) fn check(
        &mut self,
        section: &str,
        figure: &str,
        value: impl Into<String>,
        target: &str,
        pass: Option<bool>,
    ) {
        let line = Line {
            section: section.into(),
            figure: figure.into(),
            value: value.into(),
            target: target.into(),
            pass,
        };
        println!(
            "  {:<34} {:<44} {}",
            line.figure,
            line.value,
            match line.pass {
                Some(true) => format!("PASS ({})", line.target),
                Some(false) => format!("FAIL ({})", line.target),
                None => String::new(),
            }
        );
        self.lines.push(line);
    }

    pub(crate) fn markdown(&self) -> String {
        let mut s = String::from("| phase | figure | value | target | |\n|---|---|---|---|---|\n");
        for l in &self.lines {
            let verdict = match l.pass {
                Some(true) => "pass",
                Some(false) => "**FAIL**",
                None => "",
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                l.section, l.figure, l.value, l.target, verdict
            ));
        }
        s
    }
}
