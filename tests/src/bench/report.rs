//! What a benchmark run hands back: a table for people, JSON for tools, the machine it ran on.

use serde_json::{Value, json};

/// One table of results; each row is also one JSON object.
pub struct Table {
    pub title: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    pub json: Vec<Value>,
}

impl Table {
    pub fn new(title: &str, columns: &[&'static str]) -> Self {
        Self {
            title: title.to_owned(),
            columns: columns.to_vec(),
            rows: Vec::new(),
            json: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>, json: Value) {
        assert_eq!(cells.len(), self.columns.len(), "a row has a cell per column");
        self.rows.push(cells);
        self.json.push(json);
    }

    pub fn print(&self) {
        println!("\n\x1b[1m{}\x1b[0m", self.title);
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].len())
                    .chain([self.columns[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") })
                .collect();
            println!("  {}", padded.join("  "));
        };
        line(self.columns.clone());
        for r in &self.rows {
            line(r.iter().map(String::as_str).collect());
        }
    }
}

impl Table {
    /// The table in Markdown, under a heading of its title.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let row = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let mut md = format!("### {}\n\n", self.title);
        md += &row(self.columns.iter().map(|c| (*c).to_owned()).collect());
        md += &row(vec!["---".to_owned(); self.columns.len()]);
        for r in &self.rows {
            write!(md, "{}", row(r.iter().map(|c| c.replace('|', "\\|")).collect())).ok();
        }
        md
    }
}

/// Where the numbers came from, so a figure quoted elsewhere can be traced to its machine.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Online CPUs of the machine: the bench pins itself to one, so its own affinity is 1.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map_or(0, |s| s.lines().filter(|l| l.starts_with("processor")).count());
    json!({ "cpu": cpu, "cpus": cpus, "kernel": kernel.trim() })
}

pub fn ns(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// A ratio, with two decimals below 1 (a filter that keeps 1% of the unfiltered rate should
/// not read as 0.0x).
pub fn ratio(v: f64) -> String {
    if v < 1.0 { format!("{v:.2}x") } else { format!("{v:.1}x") }
}

pub fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn mib(bytes: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let m = bytes as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}
