//! The benchmark report: every benchmark pushes its result rows here; `beacon-bench report` runs them
//! all and renders one Markdown table.

use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct Row {
    pub bench: String,
    pub backend: String,
    pub throughput: String,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub baseline: String,
    pub ratio: Option<f64>,
    pub target: String,
    /// Whether the target was met; `None` when the row has no target.
    pub met: Option<bool>,
    pub rss: String,
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn push(row: Row) {
    ROWS.lock().expect("report rows").push(row);
}

pub fn note(line: String) {
    NOTES.lock().expect("report notes").push(line);
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// The table (and the notes) as Markdown.
pub fn markdown(header: &str) -> String {
    let mut out = String::new();
    out.push_str(header);
    out.push_str("\n| benchmark | store | throughput | p50 ms | p99 ms | baseline (same run) | ratio | target | met | collector peak RSS |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for r in ROWS.lock().expect("report rows").iter() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.bench,
            r.backend,
            r.throughput,
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.baseline,
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            },
            r.rss
        ));
    }
    let notes = NOTES.lock().expect("report notes");
    if !notes.is_empty() {
        out.push('\n');
        for n in notes.iter() {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out
}

/// `target`, with what was missed and by how much when `value` falls short of `goal`.
pub fn target(
    text: &str,
    value: f64,
    goal: f64,
    higher_is_better: bool,
    unit: &str,
) -> (String, bool) {
    let met = if higher_is_better {
        value >= goal
    } else {
        value <= goal
    };
    if met {
        return (text.to_string(), true);
    }
    let by = (value - goal).abs();
    let share = by / goal * 100.0;
    (
        format!("{text} — missed by {by:.2}{unit} ({share:.0} %)"),
        false,
    )
}
