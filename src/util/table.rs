//! Aligned plain-text tables for the CLI's human output.

/// Renders rows under a header, each column padded to its widest cell.
/// Columns whose header starts with '>' are right-aligned (numbers).
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let right: Vec<bool> = header.iter().map(|h| h.starts_with('>')).collect();
    let names: Vec<&str> = header.iter().map(|h| h.trim_start_matches('>')).collect();
    let mut widths: Vec<usize> = names.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut s = String::new();
        for i in 0..cols {
            let cell = cells.get(i).copied().unwrap_or("");
            let pad = widths[i].saturating_sub(width(cell));
            if i > 0 {
                s.push_str("  ");
            }
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&names);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// Two-column key/value listing.
pub fn kv(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(k);
        out.push(':');
        out.push_str(&" ".repeat(w - width(k) + 1));
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Display width, counting East Asian wide characters as two columns.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let u = c as u32;
            if (0x1100..=0x115F).contains(&u)
                || (0x2E80..=0xA4CF).contains(&u)
                || (0xAC00..=0xD7A3).contains(&u)
                || (0xF900..=0xFAFF).contains(&u)
                || (0xFF00..=0xFF60).contains(&u)
                || (0x1F300..=0x1FAFF).contains(&u)
            {
                2
            } else {
                1
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let t = super::render(
            &["name", ">count"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long".into(), "100".into()],
            ],
        );
        assert_eq!(t, "name  count\na         1\nlong    100\n");
    }
}
