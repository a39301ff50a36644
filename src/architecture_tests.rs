//! Keeps the module graph layered (see "Layers" in `docs/ARCHITECTURE.md`).
//!
//! The graph is built from the source at test time: one node per file under
//! `src/`, an edge for every `crate::…`, `super::…` or child-module path in
//! code (use lines and inline paths; comments are ignored), resolved to the
//! deepest module file that exists. The rules checked:
//!
//! - no import cycle crosses a folder: every strongly connected component
//!   lies inside one top-level module;
//! - no module imports one of a higher layer ([`LAYERS`]); in particular
//!   nothing below `http` imports `http` or `app`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module of the library, lowest layer first. A module may
/// import modules of its own layer or below, never above.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &["clock", "assets", "keyfile", "username", "imaging"],
    ),
    ("provider clients", &["providers"]),
    ("configuration", &["config", "logging"]),
    ("infrastructure", &["server", "store", "tls", "mail"]),
    (
        "domain",
        &[
            "auth",
            "cluster",
            "limits",
            "chat",
            "error",
            "ops",
            "search",
            "users",
            "transfer",
            "shares",
            "provider_admin",
            "presets",
            "model_settings",
            "knowledge",
            "files",
            "sso",
            "groups",
        ],
    ),
    ("state", &["state"]),
    ("http", &["http"]),
    ("composition", &["app", "cli", "lib", "architecture_tests"]),
];

const HTTP_LAYER: &str = "http";

/// Modules only the top layers may import.
const TOP: &[&str] = &["http", "app"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `src/`-relative paths of every `.rs` file of the library (not `main.rs`).
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src_dir()).expect("under src/");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel != "main.rs" {
                out.push(rel);
            }
        }
    }
}

/// The module path of a file: `auth/mod.rs` → `[auth]`, `lib.rs` → `[]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The top-level module a file belongs to (`lib` for `lib.rs`).
fn top_of(file: &str) -> &str {
    file.split('/')
        .next()
        .unwrap_or(file)
        .trim_end_matches(".rs")
}

fn layer_of(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, mods)| mods.contains(&top))
        .unwrap_or_else(|| panic!("module `{top}` is missing from LAYERS: give it a layer"))
}

/// The deepest existing module file for `segments`, if any.
fn file_for(files: &BTreeSet<String>, segments: &[String]) -> Option<String> {
    let mut found = None;
    for n in 1..=segments.len() {
        let base = segments[..n].join("/");
        let hit = [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|c| files.contains(c));
        match hit {
            Some(f) => found = Some(f),
            None => break,
        }
    }
    found
}

/// Splits a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![path.split_whitespace().collect()];
    };
    let close = tree.rfind('}').unwrap_or(tree.len());
    let prefix: String = tree[..open].split_whitespace().collect();
    let (mut depth, mut start, mut out) = (0, open + 1, Vec::new());
    let inner_end = close;
    for (i, c) in tree.char_indices().skip(open + 1) {
        if i >= inner_end {
            break;
        }
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.extend(
                    expand(&tree[start..i])
                        .into_iter()
                        .map(|p| prefix.clone() + &p),
                );
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner_end && !tree[start..inner_end].trim().is_empty() {
        out.extend(
            expand(&tree[start..inner_end])
                .into_iter()
                .map(|p| prefix.clone() + &p),
        );
    }
    out
}

/// The code of `text` without comments, and for each line how many inline
/// `mod name {` blocks enclose it (rustfmt indentation marks their end).
fn code_lines(text: &str) -> Vec<(String, usize)> {
    let mut open: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim() == "}" && open.last() == Some(&indent) {
            open.pop();
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push((code.to_string(), open.len()));
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        if t.starts_with("mod ") && t.trim_end().ends_with('{') {
            open.push(indent);
        }
    }
    out
}

/// Paths starting with `crate`, `super`, `self` or a child module, found in
/// use statements and inline in code, with the inline-module depth of the
/// line they are on.
fn paths_in(text: &str) -> Vec<(String, usize)> {
    let lines = code_lines(text);
    let mut out = Vec::new();
    // Use statements may span lines: join the code, remembering line depths.
    let mut joined = String::new();
    let mut depth_at = Vec::new();
    for (code, depth) in &lines {
        joined.push_str(code);
        joined.push('\n');
        depth_at.resize(joined.len(), *depth);
    }
    let mut rest = 0;
    while let Some(i) = joined[rest..].find("use ") {
        let at = rest + i;
        rest = at + 4;
        let word_start = at == 0 || !joined.as_bytes()[at - 1].is_ascii_alphanumeric();
        if !word_start {
            continue;
        }
        let Some(end) = joined[at..].find(';') else {
            break;
        };
        for p in expand(&joined[at + 4..at + end]) {
            out.push((p, depth_at[at]));
        }
        rest = at + end;
    }
    for (code, depth) in &lines {
        for start in ["crate::", "super::"] {
            let mut from = 0;
            while let Some(i) = code[from..].find(start) {
                let at = from + i;
                let path: String = code[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                from = at + path.len().max(1);
                let word_start = at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric();
                if word_start {
                    out.push((path, *depth));
                }
            }
        }
    }
    out
}

/// The file-level import graph of the library.
fn graph() -> Graph {
    let mut list = Vec::new();
    rust_files(&src_dir(), &mut list);
    let files: BTreeSet<String> = list.into_iter().collect();
    let mut graph = Graph::new();
    for file in &files {
        let text = std::fs::read_to_string(src_dir().join(file)).expect("readable source");
        let base = module_of(file);
        let children: BTreeSet<String> = text
            .lines()
            .filter_map(|l| {
                let t = l.trim_start();
                let t = t.strip_prefix("pub ").unwrap_or(t);
                let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
                t.strip_prefix("mod ")?.strip_suffix(';').map(String::from)
            })
            .collect();
        let mut targets = BTreeSet::new();
        for (path, depth) in paths_in(&text) {
            let mut segs: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty() && *s != "*")
                .map(String::from)
                .collect();
            let Some(first) = segs.first().cloned() else {
                continue;
            };
            let resolved: Vec<String> = match first.as_str() {
                "crate" => segs.split_off(1),
                "super" | "self" => {
                    // Inside an inline module, the first `super` is the file.
                    let mut cur = base.clone();
                    let mut inline = depth;
                    while let Some(s) = segs.first().map(String::as_str) {
                        match s {
                            "super" if inline > 0 => inline -= 1,
                            "super" => {
                                cur.pop();
                            }
                            "self" => {}
                            _ => break,
                        }
                        segs.remove(0);
                    }
                    cur.extend(segs);
                    cur
                }
                c if children.contains(c) => base.iter().cloned().chain(segs).collect(),
                _ => continue,
            };
            let resolved: Vec<String> = resolved.into_iter().filter(|s| s != "self").collect();
            if let Some(target) = file_for(&files, &resolved)
                && &target != file
            {
                targets.insert(target);
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

/// Strongly connected components (Tarjan), each sorted.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                comp.sort();
                self.out.push(comp);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.out
}

#[test]
fn the_graph_sees_known_edges() {
    // Guards the parser: if these vanish, the checks below prove nothing.
    let g = graph();
    assert!(
        g["http/mod.rs"].contains("state.rs"),
        "{:?}",
        g["http/mod.rs"]
    );
    assert!(g["app.rs"].contains("http/mod.rs"), "{:?}", g["app.rs"]);
    assert!(g["limits/metrics.rs"].contains("store/metrics.rs"));
    assert!(g["limits/quota.rs"].contains("store/usage.rs"));
}

#[test]
fn every_module_has_a_layer() {
    for file in graph().keys() {
        layer_of(top_of(file));
    }
}

#[test]
fn no_cycle_crosses_a_folder() {
    let crossing: Vec<String> = components(&graph())
        .into_iter()
        .filter(|c| c.iter().map(|f| top_of(f)).collect::<BTreeSet<_>>().len() > 1)
        .map(|c| format!("{} files: {}", c.len(), c.join(", ")))
        .collect();
    assert!(
        crossing.is_empty(),
        "import cycles across folders of src/ (break them by moving the shared item down a layer):\n{}",
        crossing.join("\n")
    );
}

#[test]
fn nothing_below_http_imports_http_or_app() {
    let http = LAYERS
        .iter()
        .position(|(name, _)| *name == HTTP_LAYER)
        .expect("an http layer");
    let mut bad = Vec::new();
    for (file, targets) in &graph() {
        if layer_of(top_of(file)) >= http {
            continue;
        }
        for t in targets {
            if TOP.contains(&top_of(t)) {
                bad.push(format!("{file} imports {t}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "modules below http import http or app:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_module_imports_a_higher_layer() {
    let mut bad = Vec::new();
    for (file, targets) in &graph() {
        let from = layer_of(top_of(file));
        for t in targets {
            let to = layer_of(top_of(t));
            if to > from {
                bad.push(format!(
                    "{file} ({}) imports {t} ({})",
                    LAYERS[from].0, LAYERS[to].0
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports that point up the layers (move the shared item down, or the importer up):\n{}",
        bad.join("\n")
    );
}
