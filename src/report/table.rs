//! Plain text tables for people: padded columns, numbers right-aligned, cells cut to fit 80
//! columns. Knows nothing of runs or findings.

/// Cuts a cell to `max` characters, ending in `…` when cut (0: no limit). Tables fit 80
/// columns; `--format csv` and `json` carry the full values.
pub(super) fn fit(cell: &str, max: usize) -> String {
    if max == 0 || cell.chars().count() <= max {
        cell.to_owned()
    } else {
        let mut s: String = cell.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// A table whose columns are cut to `max` characters each (0: no limit).
pub fn table_fit(
    headers: &[&str],
    rows: &[Vec<String>],
    numeric: &[bool],
    max: &[usize],
) -> String {
    let cut: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| fit(c, max.get(i).copied().unwrap_or(0)))
                .collect()
        })
        .collect();
    table(headers, &cut, numeric)
}

/// A plain text table: columns padded to their widest cell, numbers right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>], numeric: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                l.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                if i + 1 < cells.len() {
                    l.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_and_right_aligns_numbers() {
        let s = table(
            &["NAME", "N"],
            &[
                vec!["alice".into(), "3".into()],
                vec!["b".into(), "120".into()],
            ],
            &[false, true],
        );
        insta::assert_snapshot!(s, @r"
        NAME     N
        alice    3
        b      120
        ");
    }
}
