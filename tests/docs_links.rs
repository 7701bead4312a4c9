//! Every relative link in README.md and docs/*.md names a file that exists, and every `#anchor`
//! a heading of its target, as GitHub makes anchors: lowercased, spaces to `-`, punctuation
//! other than `-` and `_` dropped, `-1`, `-2` appended to repeats.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The lines of a Markdown file outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut in_code = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code
    })
}

/// The anchors of a Markdown file's headings (code blocks skipped).
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for line in prose(text) {
        let Some(heading) = line.strip_prefix('#').map(|rest| rest.trim_start_matches('#')) else {
            continue;
        };
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        out.push(if *count == 0 { slug.clone() } else { format!("{slug}-{count}") });
        *count += 1;
    }
    out
}

/// The targets of inline links `[text](target)` outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        // Inline code spans may hold `](`, which is no link.
        let line: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].split_whitespace().next().unwrap_or_default().to_string());
            rest = &after[end..];
        }
    }
    out
}

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Every broken link of `file`, as `file: target (reason)`.
fn broken(root: &Path, file: &Path) -> Vec<String> {
    let text = fs::read_to_string(file).unwrap();
    let name = file.strip_prefix(root).unwrap().display().to_string();
    let mut problems = Vec::new();
    for link in links(&text) {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
        let target = if path.is_empty() { file.to_path_buf() } else { file.parent().unwrap().join(path) };
        if !target.exists() {
            problems.push(format!("{name}: {link} (no such file)"));
            continue;
        }
        let inside = target.canonicalize().unwrap();
        if !inside.starts_with(root.canonicalize().unwrap()) {
            problems.push(format!("{name}: {link} (outside the repository)"));
        }
        if !anchor.is_empty() {
            let heads = fs::read_to_string(&target).map(|t| anchors(&t)).unwrap_or_default();
            if !heads.iter().any(|head| head == anchor) {
                problems.push(format!("{name}: {link} (no such heading)"));
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = documents(root);
    assert!(files.len() > 1, "docs/*.md found");
    let problems: Vec<String> = files.iter().flat_map(|file| broken(root, file)).collect();
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn anchors_follow_github() {
    let text = "# The smol-echo contract\n## `--mode raw` (RFC 862)\n```\n# not a heading\n```\n## Notes\n## Notes\n";
    assert_eq!(anchors(text), ["the-smol-echo-contract", "--mode-raw-rfc-862", "notes", "notes-1"]);
    assert_eq!(links("see [a](b.md#c), `[x](y)`, [d](#e)"), ["b.md#c", "#e"]);
}

#[test]
fn a_broken_link_is_found() {
    let dir = std::env::temp_dir().join(format!("smol-echo-links-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a.md");
    fs::write(&file, "# Top\n[ok](#top) [gone](#nowhere) [missing](b.md)\n").unwrap();
    let problems = broken(&dir, &file);
    fs::remove_dir_all(&dir).ok();
    assert_eq!(problems, ["a.md: #nowhere (no such heading)", "a.md: b.md (no such file)"]);
}
