//! The intended picture of the house (shared/STYLE.md, "Which module may use
//! which"), checked from the source: every `crate::<part>` a part names, in a
//! `use` line or a path, must be on its list. The data path reads straight
//! down, `input → journal → runner (api) → journal → report`, with `model` at
//! the bottom and `cli` the only place that maps one part's types to another's.
//!
//! Unit-test modules (`#[cfg(test)]` to the end of a file) are not part of the
//! picture and are not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which parts each part may use (besides itself).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("model", &[][..]),
        ("api", &["model"][..]),
        ("input", &["model"][..]),
        ("journal", &["model"][..]),
        ("report", &["journal", "model"][..]),
        ("runner", &["api", "journal", "model"][..]),
        ("emulator", &["api", "model"][..]),
        (
            "cli",
            &[
                "api", "emulator", "input", "journal", "model", "report", "runner",
            ][..],
        ),
    ])
}

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its unit-test module.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start() == "#[cfg(test)]" && !line.starts_with(' ') {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every part named as `crate::part`, also inside `use crate::{a::…, b};` groups.
fn parts_used(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A group: take each top-level item's first segment.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        used.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used.retain(|p| !p.is_empty());
    used
}

#[test]
fn no_part_uses_a_part_it_must_not() {
    let allowed = allowed();
    let mut files = Vec::new();
    rs_files(Path::new("src"), &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix("src").unwrap();
        let part = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if part == "lib" || part == "main" {
            continue;
        }
        let Some(may) = allowed.get(part.as_str()) else {
            violations.push(format!(
                "{}: belongs to no part of the picture",
                f.display()
            ));
            continue;
        };
        checked += 1;
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        for used in parts_used(&code) {
            if used != part && !may.contains(&used.as_str()) {
                violations.push(format!("{}: {part} uses {used}", f.display()));
            }
        }
    }
    assert!(checked > 30, "only {checked} files found under src/");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The checker itself: it sees paths, groups and nested groups, and skips
/// comments and test modules.
#[test]
fn the_checker_finds_every_form_of_use() {
    let code = code_of(
        "use crate::api::Client;\n\
         use crate::{journal::{read, Journal}, model};\n\
         let x = crate::runner::run();\n\
         // crate::emulator in a comment\n\
         #[cfg(test)]\n\
         mod tests { use crate::cli; }\n",
    );
    let used: Vec<String> = parts_used(&code).into_iter().collect();
    assert_eq!(used, ["api", "journal", "model", "runner"]);
}
