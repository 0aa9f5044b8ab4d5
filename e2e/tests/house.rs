//! The shape of the house: no module of any crate imports, directly or through others, a module
//! that imports it back. A circle means two modules are one concern split in two (or a leaf is
//! missing), and it makes each impossible to read, test or move without the other.
//!
//! The module tree is followed from each crate root (`src/lib.rs`, `src/main.rs`,
//! `src/bin/*.rs`) through its `mod` declarations; an import is a `crate::…`, `super::…` or
//! child-module path in code before the file's first `#[cfg(test)]` (tests may reach anywhere).
//! An import from module A to module B counts between the two children of their nearest common
//! ancestor that hold them: `a::x` using `a::y::z` is an edge from `a::x` to `a::y`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The workspace's member directories, from the root manifest.
fn members() -> Vec<PathBuf> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let line = text.lines().find(|l| l.starts_with("members")).expect("members = [...]");
    line.split('"').skip(1).step_by(2).map(|m| root().join(m)).collect()
}

/// Code before the first `#[cfg(test)]`, without `//` comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let line = line.split("//").next().unwrap_or_default();
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// `mod name;` declarations (not inline `mod name {`, whose code is in this file).
fn child_decls(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub(crate) ").or_else(|| t.strip_prefix("pub ")).unwrap_or(t);
        if let Some(rest) = t.strip_prefix("mod ") {
            let name = ident_at(rest);
            if rest[name.len()..].trim_start().starts_with(';') {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// Modules of one crate: path (segments) → file.
fn modules(root_file: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut todo = vec![(Vec::new(), root_file.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let code = code(&file);
        // Children of lib.rs / main.rs / mod.rs sit beside it; of a.rs, in a/.
        let is_dir_owner = matches!(file.file_name().and_then(|n| n.to_str()), Some("lib.rs" | "main.rs" | "mod.rs"))
            || (path.is_empty());
        let dir = if is_dir_owner { file.parent().expect("dir").to_path_buf() } else { file.with_extension("") };
        for child in child_decls(&code) {
            let candidates = [dir.join(format!("{child}.rs")), dir.join(&child).join("mod.rs")];
            if let Some(f) = candidates.into_iter().find(|f| f.is_file()) {
                let mut p = path.clone();
                p.push(child);
                todo.push((p, f));
            }
        }
        found.insert(path, file);
    }
    found
}

/// The paths `rest` (what follows `base::`) names: `a::b::X`, or each item of `a::{b, c::d}`.
fn paths_after(mut base: Vec<String>, rest: &str) -> Vec<Vec<String>> {
    let mut s = rest;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            return group.split(',').flat_map(|item| paths_after(base.clone(), item.trim())).collect();
        }
        let id = ident_at(s);
        if id.is_empty() {
            return vec![base];
        }
        base.push(id.to_owned());
        match s[id.len()..].strip_prefix("::") {
            Some(next) => s = next,
            None => return vec![base],
        }
    }
}

/// What a module's code refers to: the longest known module of each path, and the item named
/// after it (if any).
fn references(me: &[String], code: &str, known: &BTreeSet<Vec<String>>) -> BTreeSet<(Vec<String>, Option<String>)> {
    let longest_known = |segs: Vec<String>| {
        (0..=segs.len()).rev().map(|n| segs[..n].to_vec()).find(|p| known.contains(p)).map(|m| {
            let item = segs.get(m.len()).cloned();
            (m, item)
        })
    };
    let mut out = BTreeSet::new();
    let mut add = |base: Vec<String>, rest: &str| {
        for p in paths_after(base, rest) {
            out.extend(longest_known(p));
        }
    };
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` in macros, `switchyard_x::crate::…` never
        }
        add(Vec::new(), &code[i + "crate::".len()..]);
    }
    for (i, _) in code.match_indices("super::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue; // `super::super::` is handled from its first `super`
        }
        let mut base = me.to_vec();
        let mut rest = &code[i..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        add(base, rest);
    }
    // Paths through a declared child module (`use child::…`, `child::f()`).
    let children: Vec<&Vec<String>> = known.iter().filter(|k| k.len() == me.len() + 1 && k.starts_with(me)).collect();
    for child in children {
        let name = format!("{}::", child[me.len()]);
        for (i, _) in code.match_indices(&name) {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            add(me.to_vec(), &code[i..]);
        }
    }
    out
}

/// One circle among siblings, if any (as a list of module paths).
fn find_circle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => {
                    let start = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut circle = stack[start..].to_vec();
                    circle.push(m.clone());
                    return Some(circle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n)
            && let Some(c) = visit(n, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// Items a file defines itself (not re-exports): what a child module can depend on in it.
fn defined_items(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let mut t = line.trim_start();
        for prefix in ["pub(crate) ", "pub(super) ", "pub ", "async ", "const ", "unsafe "] {
            if let Some(rest) = t.strip_prefix(prefix) {
                t = rest;
            }
        }
        for kw in ["fn ", "struct ", "enum ", "const ", "static ", "type ", "trait ", "macro_rules! "] {
            if let Some(rest) = t.strip_prefix(kw) {
                out.insert(ident_at(rest).to_owned());
            }
        }
    }
    out
}

/// Circles in the crate rooted at `root_file`, each as `a -> b -> a` (`crate` is the root's
/// own code).
fn circles_in(root_file: &Path) -> Vec<String> {
    let mods = modules(root_file);
    let known: BTreeSet<Vec<String>> = mods.keys().cloned().collect();
    let items: BTreeMap<&Vec<String>, BTreeSet<String>> =
        mods.iter().map(|(m, f)| (m, defined_items(&code(f)))).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (me, file) in &mods {
        for (target, item) in references(me, &code(file), &known) {
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let (from, to) = if common == target.len() && common < me.len() {
                // Up to an ancestor: a dependency on the ancestor's own code only if the item is
                // defined there (a re-export stands for the module that defines it).
                match item {
                    Some(i) if items.get(&target).is_some_and(|d| d.contains(&i)) => (me[..=common].to_vec(), target),
                    _ => continue,
                }
            } else if common == me.len() && common < target.len() {
                // Down into a descendant: the ancestor's own code depends on that child.
                (me.clone(), target[..=common].to_vec())
            } else if common < me.len() {
                (me[..=common].to_vec(), target[..=common].to_vec())
            } else {
                continue;
            };
            edges.entry(from).or_default().insert(to);
        }
    }
    find_circle(&edges)
        .map(|c| {
            let name = |p: &Vec<String>| if p.is_empty() { "crate".to_owned() } else { p.join("::") };
            vec![c.iter().map(name).collect::<Vec<_>>().join(" -> ")]
        })
        .unwrap_or_default()
}

#[test]
fn no_module_imports_in_a_circle() {
    let mut problems = Vec::new();
    let mut crates = 0;
    for dir in members() {
        let src = dir.join("src");
        let mut roots: Vec<PathBuf> =
            ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).filter(|f| f.is_file()).collect();
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            roots.extend(
                bins.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "rs")),
            );
        }
        for r in roots {
            crates += 1;
            for c in circles_in(&r) {
                problems.push(format!("{}: {c}", r.strip_prefix(root()).unwrap_or(&r).display()));
            }
        }
    }
    assert!(crates >= 15, "only {crates} crate roots found");
    assert!(problems.is_empty(), "modules importing each other:\n{}", problems.join("\n"));
}

/// The checker finds a circle it is shown, and none where imports go one way.
#[test]
fn the_checker_sees_a_circle() {
    let dir = std::env::temp_dir().join(format!("switchyard-house-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\npub use a::X;\n").unwrap();
    std::fs::write(dir.join("a.rs"), "mod inner;\nuse crate::b::Y;\npub struct X;\n").unwrap();
    std::fs::write(dir.join("a/inner.rs"), "use super::super::b;\n").unwrap();
    std::fs::write(dir.join("b.rs"), "pub struct Y;\n#[cfg(test)]\nuse crate::a::X;\n").unwrap();
    assert_eq!(circles_in(&dir.join("lib.rs")), Vec::<String>::new(), "b's test import does not count");
    std::fs::write(dir.join("b.rs"), "use crate::{c, a::X};\npub struct Y;\n").unwrap();
    assert_eq!(circles_in(&dir.join("lib.rs")), ["a -> b -> a"]);
    // A child that uses its parent's own code while the parent uses the child.
    std::fs::write(dir.join("b.rs"), "pub struct Y;\n").unwrap();
    std::fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\npub use a::X;\npub fn helper() { b::Y; }\n").unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::X as _;\npub struct X;\n").unwrap();
    assert_eq!(circles_in(&dir.join("lib.rs")), Vec::<String>::new(), "a re-export is not the root's own code");
    std::fs::write(dir.join("b.rs"), "use crate::helper;\npub struct Y;\n").unwrap();
    assert_eq!(circles_in(&dir.join("lib.rs")), ["crate -> b -> crate"]);
    let _ = std::fs::remove_dir_all(&dir);
}
