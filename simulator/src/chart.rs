//! A chart of devices per version over time, as a self-contained SVG a person can open.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::run::Sample;

const W: f64 = 720.0;
const H: f64 = 320.0;
const PAD: f64 = 48.0;
const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1"];

/// Renders `timeline` (one line per version) with `title`.
pub fn svg(title: &str, timeline: &[Sample], devices: u64) -> String {
    let versions: BTreeSet<&String> = timeline.iter().flat_map(|s| s.versions.keys()).collect();
    let t_max = timeline.last().map_or(1.0, |s| s.secs.max(1.0));
    let y_max = devices.max(1) as f64;
    let x = |t: f64| PAD + t / t_max * (W - 2.0 * PAD);
    let y = |n: f64| H - PAD - n / y_max * (H - 2.0 * PAD);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{PAD}" y="24" font-size="15">{}</text>"#,
        escape(title)
    );
    let _ = write!(
        out,
        r##"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="#333"/>"##,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{:.0} s</text><text x="{}" y="{}" text-anchor="end">{devices}</text>"#,
        W - PAD,
        H - PAD + 18.0,
        t_max,
        PAD - 6.0,
        PAD + 4.0
    );
    for (i, v) in versions.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = timeline
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    x(s.secs),
                    y(s.versions.get(*v).copied().unwrap_or(0) as f64)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            W - PAD - 90.0,
            PAD + 16.0 * i as f64,
            W - PAD - 75.0,
            PAD + 9.0 + 16.0 * i as f64,
            escape(v)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
