//! The module edges of docs/ARCHITECTURE.md, checked on the source text: `domain` uses no
//! other module of the crate, `store` never uses `settings`, `cli`, `http` or `routing`,
//! and `settings` never uses `cli`. A file's test code (from its first `#[cfg(test)]` on)
//! is not checked: a test may build its inputs from any module.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's top-level modules, as `src/lib.rs` declares them.
fn top_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .filter_map(|rest| rest.strip_suffix(';'))
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file at `path`: the file itself, or a directory's files at any depth.
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())) {
        let p = entry.expect("directory entry").path();
        if p.is_dir() {
            files.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
    files
}

/// The first path segment after each `crate::` in `code` (both `crate::store::Db` and the
/// grouped `crate::{settings, store::Db}`), comment lines skipped.
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names = match rest.strip_prefix('{') {
                // Only the group's top level names a module; `store::{Db, Outcome}` does not.
                Some(group) => top_level_items(group),
                None => vec![rest],
            };
            out.extend(names.into_iter().map(|n| {
                let end = n.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(n.len());
                n[..end].to_owned()
            }));
        }
    }
    out
}

/// The items of a `{…}` group (its text after the `{`), split at top-level commas.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0usize, 0usize, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(group[start..i].trim());
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(group[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(group[start..].trim());
    items
}

/// The code of a file before its first `#[cfg(test)]`.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// `(file, module)` for every use of a module in `forbidden` by the files at `under`.
fn uses_of(under: &str, forbidden: &[String]) -> Vec<(String, String)> {
    let files = rust_files(&src().join(under));
    assert!(!files.is_empty(), "no source files at src/{under}");
    let mut found = Vec::new();
    for file in files {
        for module in named_modules(&non_test_code(&file)) {
            if forbidden.contains(&module) {
                let shown = file.strip_prefix(src()).unwrap_or(&file).display().to_string();
                found.push((shown, module));
            }
        }
    }
    found
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_scanner_reads_paths_and_groups() {
    let code = "use crate::{settings, store::{Db, Outcome}};\nlet x = crate::http::router(s);\n// crate::cli is a comment\nuse crate::domain::{EventStatus, Source};";
    assert_eq!(named_modules(code), ["settings", "store", "http", "domain"]);
    let modules = top_modules();
    for m in ["domain", "store", "settings", "cli", "http", "routing"] {
        assert!(modules.iter().any(|x| x == m), "{m} missing from {modules:?}");
    }
}

#[test]
fn domain_uses_no_other_module() {
    let others: Vec<String> = top_modules().into_iter().filter(|m| m != "domain").collect();
    assert_eq!(uses_of("domain", &others), []);
}

#[test]
fn store_never_uses_settings_cli_http_or_routing() {
    assert_eq!(uses_of("store", &names(&["settings", "cli", "http", "routing"])), []);
}

#[test]
fn settings_never_uses_cli() {
    assert_eq!(uses_of("settings", &names(&["cli"])), []);
}

/// The module path of a file under `src/` (`store/sqlite/admin.rs` → store, sqlite, admin;
/// a `mod.rs` is its directory's module).
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap_or(file).with_extension("");
    let mut path: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// The absolute module paths `code` (in the module `here`) names with `crate::` or
/// `super::` (grouped items included), e.g. `super::sqlite::x` in `store::series` →
/// store, sqlite, x.
fn named_paths(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut i = 0;
        while i < line.len() {
            let rest = &line[i..];
            let boundary = !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            let (mut base, mut tail) = if boundary && rest.starts_with("crate::") {
                (Vec::new(), &rest["crate::".len()..])
            } else if boundary && rest.starts_with("super::") {
                (here.to_vec(), rest)
            } else {
                i += rest.chars().next().map_or(1, char::len_utf8);
                continue;
            };
            while let Some(after) = tail.strip_prefix("super::") {
                base.pop();
                tail = after;
            }
            expand(base, tail, &mut out);
            i += 1;
        }
    }
    out
}

/// The paths of `text` (after `base::`): `a::b`, or `a::{b, c::d}` at any depth.
fn expand(mut base: Vec<String>, text: &str, out: &mut Vec<Vec<String>>) {
    let mut rest = text;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                expand(base.clone(), item, out);
            }
            return;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 {
            base.push(rest[..end].to_owned());
        }
        match rest[end..].strip_prefix("::") {
            Some(after) if end > 0 => rest = after,
            _ => break,
        }
    }
    out.push(base);
}

/// Pairs of modules directly under `src/<under>/` (a file or a directory with everything
/// in it) that each use the other: a cycle, one of them holding what belongs to neither.
fn mutual_uses(under: &str) -> Vec<(String, String)> {
    let root = src().join(under);
    let units: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.with_extension("").file_name().unwrap().to_string_lossy().into_owned())
        .filter(|u| u != "mod")
        .collect();
    let mut edges = std::collections::BTreeSet::new();
    for file in rust_files(&root) {
        let here = module_path(&file);
        let Some(from) = here.get(1).filter(|u| units.contains(u)) else {
            continue;
        };
        for path in named_paths(&non_test_code(&file), &here) {
            if path.first().map(String::as_str) == Some(under)
                && let Some(to) = path.get(1).filter(|u| units.contains(u) && *u != from)
            {
                edges.insert((from.clone(), to.clone()));
            }
        }
    }
    edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .cloned()
        .collect()
}

#[test]
fn the_cycle_scanner_resolves_super_and_groups() {
    let here = names(&["store", "sqlite", "admin"]);
    let paths = named_paths(
        "use super::finished_rows;\nlet q = super::super::series::X;\nuse crate::store::{copy, rows::x};",
        &here,
    );
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        shown,
        [
            "store::sqlite::finished_rows",
            "store::series::X",
            "store::copy",
            "store::rows::x"
        ]
    );
}

#[test]
fn no_two_modules_of_store_use_each_other() {
    assert_eq!(mutual_uses("store"), []);
}
