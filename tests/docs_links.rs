//! The docs are one README and a few pages under docs/ that link to each other: every relative
//! link (`[text](path)`, `[text](path#anchor)`, `[text](#anchor)`, images too) in README.md and
//! docs/*.md leads to a file that exists and, for an anchor, to a heading of that file, named
//! as GitHub names it. The README links to every docs page.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// README.md and every docs/*.md page.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir("docs")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages.insert(0, PathBuf::from("README.md"));
    pages
}

/// The lines of a markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(f) if trimmed.starts_with(f) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => lines.push(line),
        }
    }
    lines
}

/// A line without its inline code spans (`...`): what they hold is no link.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join("")
}

/// GitHub's anchor for a heading's text: inline markup dropped, lowercase, spaces to hyphens,
/// every other character that is not a letter, a digit, `-` or `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown text's ATX headings (`## Text`), repeated ones numbered `-1`,
/// `-2`, ... as GitHub numbers them.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let title = line[hashes..].trim().trim_end_matches('#').trim_end();
        // Link markup keeps its text: `[text](url)` shows as `text`.
        let mut shown = String::new();
        let mut rest = title;
        while let Some(open) = rest.find("](") {
            let close = rest[open..].find(')').map_or(rest.len(), |c| open + c + 1);
            shown.push_str(&rest[..open].replace('[', ""));
            rest = &rest[close..];
        }
        shown.push_str(rest);
        let base = slug(&shown);
        let n = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    anchors
}

/// The relative link targets of a markdown text (external ones, with a scheme, left out).
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            // `(path "title")`: the path alone.
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            if !target.contains("://") && !target.starts_with("mailto:") {
                links.push(target.to_owned());
            }
            rest = &rest[end..];
        }
    }
    links
}

/// Every broken relative link of `page` (whose text is `text`), said.
fn broken_links(page: &Path, text: &str) -> Vec<String> {
    let dir = page.parent().unwrap_or(Path::new(""));
    let mut broken = Vec::new();
    for link in relative_links(text) {
        let (path, anchor) = match link.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (link.as_str(), None),
        };
        if path.is_empty() && anchor.is_none() {
            broken.push(format!("{}: empty link", page.display()));
            continue;
        }
        let target = if path.is_empty() {
            page.to_path_buf()
        } else {
            dir.join(path)
        };
        if !target.exists() {
            broken.push(format!(
                "{}: `{link}`: {} does not exist",
                page.display(),
                target.display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        let target_text = if path.is_empty() {
            text.to_owned()
        } else if target.extension().is_some_and(|x| x == "md") {
            std::fs::read_to_string(&target).unwrap()
        } else {
            broken.push(format!(
                "{}: `{link}`: an anchor into a file that is not markdown",
                page.display()
            ));
            continue;
        };
        let known = anchors(&target_text);
        if !known.iter().any(|a| a == anchor) {
            broken.push(format!(
                "{}: `{link}`: {} has no heading with anchor #{anchor} (it has: {})",
                page.display(),
                target.display(),
                known.join(", ")
            ));
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_of_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        checked += relative_links(&text).len();
        broken.extend(broken_links(&page, &text));
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked >= 20,
        "only {checked} links checked: is the parser still finding them?"
    );
}

#[test]
fn the_readme_links_to_every_docs_page() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let links = relative_links(&readme);
    for page in pages().into_iter().skip(1) {
        let page = page.to_str().unwrap().to_owned();
        assert!(
            links
                .iter()
                .any(|l| l.split('#').next() == Some(page.as_str())),
            "README.md does not link to {page}"
        );
    }
}

#[test]
fn anchors_are_named_as_github_names_them() {
    let text = "# Safety\n\
                ## What the settle window protects, and what it costs\n\
                ### `drift` — findings that came back after iamsweep detached them\n\
                ## Scheduled sweeps: what changed, drift, CI\n\
                ```sh\n# not a heading\n```\n\
                ## [Linked](x.md) heading\n\
                ## Safety\n";
    assert_eq!(
        anchors(text),
        [
            "safety",
            "what-the-settle-window-protects-and-what-it-costs",
            "drift--findings-that-came-back-after-iamsweep-detached-them",
            "scheduled-sweeps-what-changed-drift-ci",
            "linked-heading",
            "safety-1",
        ]
    );
}

#[test]
fn a_broken_link_is_found() {
    // As if in README.md: a missing file, a missing anchor here, a missing anchor there; links
    // in code (spans and fences) and external ones are not links to check.
    let text = "# Title\n\
                [a](docs/no-such-page.md) [b](#no-such-heading) [c](docs/schema.md#no-such-heading)\n\
                [ok](#title) [ok](docs/schema.md#tables) [web](https://example.com/x#y)\n\
                `[code](nowhere.md)`\n\
                ```\n[fenced](nowhere.md)\n```\n";
    let broken = broken_links(Path::new("README.md"), text);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("no-such-page.md"), "{}", broken[0]);
    assert!(broken[1].contains("#no-such-heading"), "{}", broken[1]);
    assert!(broken[2].contains("docs/schema.md"), "{}", broken[2]);
}
