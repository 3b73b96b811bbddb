//! RFC 4180 CSV for tools: fields quoted only when they need it, whole or written one field at
//! a time. Never cuts a value: CSV carries it in full.

use std::io::Write;

/// Whether a CSV field must be quoted. Bytes, not chars: it runs on every cell of a
/// million-row report.
fn needs_quotes(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// Writes one CSV field without allocating unless it needs quotes.
pub(super) fn write_csv_field(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    if needs_quotes(s) {
        out.write_all(csv_field(s).as_bytes())
    } else {
        out.write_all(s.as_bytes())
    }
}

/// One RFC 4180 CSV field: quoted only when it needs it.
fn csv_field(s: &str) -> String {
    if needs_quotes(s) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// RFC 4180 CSV.
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let join = |cells: Vec<String>| cells.join(",") + "\n";
    out.push_str(&join(headers.iter().map(|h| csv_field(h)).collect()));
    for row in rows {
        out.push_str(&join(row.iter().map(|c| csv_field(c)).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let s = csv(
            &["a", "b"],
            &[
                vec!["x,y".into(), "say \"hi\"".into()],
                vec!["plain".into(), "".into()],
            ],
        );
        assert_eq!(s, "a,b\n\"x,y\",\"say \"\"hi\"\"\"\nplain,\n");
    }
}
