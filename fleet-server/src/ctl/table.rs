//! Plain aligned tables and key/value blocks for human output (no colours, no box drawing), plus
//! the small formatters the command modules share.

use std::fmt::Write as _;

/// A table: a header row and rows of cells, rendered with columns padded to the widest cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells render empty, extra cells are kept.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text: header, then rows; two spaces between columns, no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            render_line(&mut out, line, &widths);
        }
        out
    }
}

fn render_line(out: &mut String, line: &[String], widths: &[usize]) {
    let mut text = String::new();
    for (i, w) in widths.iter().enumerate() {
        let cell = line.get(i).map(|c| clean(c)).unwrap_or_default();
        let pad = w.saturating_sub(width(&cell));
        text.push_str(&cell);
        if i + 1 < widths.len() {
            text.push_str(&" ".repeat(pad + 2));
        }
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// Cells are one line: control characters (newlines, tabs, escapes) become spaces.
fn clean(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Display width, counted in characters (enough for names, versions and ids).
fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// `key: value` lines with the keys padded to the same width.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let pad = " ".repeat(w - width(key));
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{key}:{pad} {}", clean(value));
    }
    out
}

/// Unix seconds as an RFC 3339 UTC instant (`-` for 0, the raw number when out of range).
pub fn time(unix: i64) -> String {
    if unix == 0 {
        return "-".to_owned();
    }
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// An optional cell (`-` when absent).
pub fn opt(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A list cell: comma-separated, `-` when empty.
pub fn list(values: &[String]) -> String {
    if values.is_empty() {
        "-".to_owned()
    } else {
        values.join(",")
    }
}

/// A byte count in binary units (`512 B`, `1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The first 12 hex characters of a digest.
pub fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut table = Table::new(&["ID", "SITE", "VERSION"]);
        table.row(vec!["dev-1".into(), "store-042".into(), "1.2.0".into()]);
        table.row(vec!["dev-10000".into(), "-".into(), "2.0.0".into()]);
        assert_eq!(
            table.render(),
            "ID         SITE       VERSION\n\
             dev-1      store-042  1.2.0\n\
             dev-10000  -          2.0.0\n"
        );
    }

    #[test]
    fn ragged_rows_and_control_characters_stay_on_one_line() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["x\ny".into()]);
        table.row(vec!["1".into(), "2".into(), "extra".into()]);
        assert_eq!(table.render(), "A    B\nx y\n1    2  extra\n");
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn wide_characters_count_once() {
        let mut table = Table::new(&["SITE", "N"]);
        table.row(vec!["zürich".into(), "1".into()]);
        assert_eq!(table.render(), "SITE    N\nzürich  1\n");
    }

    #[test]
    fn key_values_pad_keys() {
        let text = key_values(&[("id", "dev-1".into()), ("hardware", "pos-x86".into())]);
        assert_eq!(text, "id:       dev-1\nhardware: pos-x86\n");
    }

    #[test]
    fn formatters() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 * 1024 * 1024 + 512 * 1024), "64.5 MiB");
        assert_eq!(list(&[]), "-");
        assert_eq!(list(&["a".into(), "b".into()]), "a,b");
        assert_eq!(opt(None::<u32>), "-");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
    }
}
