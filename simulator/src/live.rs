//! The live view of a run on a terminal: one bar per version (devices running it) and a status line
//! (virtual time, rollout states). Drawn only when stderr is a terminal; otherwise silent.

use std::collections::BTreeMap;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bars per version and a status line.
#[derive(Debug)]
pub struct Live {
    multi: MultiProgress,
    status: ProgressBar,
    bars: BTreeMap<String, ProgressBar>,
    total: u64,
}

impl Live {
    /// A live view for `total` devices, drawn on stderr when it is a terminal (`force` draws anyway).
    pub fn new(total: u64, force: bool) -> Option<Self> {
        use std::io::IsTerminal as _;
        if !force && !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Some(Self {
            multi,
            status,
            bars: BTreeMap::new(),
            total,
        })
    }

    /// Shows devices per version and `status`.
    pub fn update(&mut self, versions: &BTreeMap<String, u64>, status: &str) {
        for (v, n) in versions {
            let bar = self.bars.entry(v.clone()).or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(self.total));
                b.set_style(
                    ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos:>6}/{len} devices")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_prefix(v.clone());
                b
            });
            bar.set_position(*n);
        }
        for (v, bar) in &self.bars {
            if !versions.contains_key(v) {
                bar.set_position(0);
            }
        }
        self.status.set_message(status.to_owned());
        self.status.tick();
    }

    /// Prints a line above the bars.
    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// Leaves the bars as they are on screen.
    pub fn finish(self) {
        for b in self.bars.values() {
            b.abandon();
        }
        self.status.finish_and_clear();
    }
}
