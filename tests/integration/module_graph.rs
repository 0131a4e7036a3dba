//! The crate's dependencies point one way: no cycle between its top-level modules, and none between the files of one
//! module. The graph is read from the `crate::` paths of non-test code (`use` trees and paths in expressions and
//! types), parsed with `syn`; code under `#[cfg(test)]` and `*_tests.rs` files do not count. ARCHITECTURE.md draws
//! the layers this keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A directed graph of module or file names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// True when the attributes hold `#[cfg(test)]` (also `cfg(all(test, ...))`).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr.meta.require_list().is_ok_and(|list| {
                list.tokens
                    .to_string()
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|word| word == "test")
            })
    })
}

/// The attributes of an item, for the kinds that can carry `#[cfg(test)]` here.
fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        _ => &[],
    }
}

/// Collects the `crate::` paths of one file's non-test code, and the `#[cfg(test)] mod name;` files it declares.
#[derive(Default)]
struct CratePaths {
    /// Each path's segments after `crate`.
    paths: BTreeSet<Vec<String>>,
    /// Modules declared test-only without a body (their files are test code).
    test_modules: Vec<String>,
}

impl CratePaths {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.record_use(prefix, Some(name.ident.to_string())),
            syn::UseTree::Rename(rename) => self.record_use(prefix, Some(rename.ident.to_string())),
            syn::UseTree::Glob(_) => self.record_use(prefix, None),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    fn record_use(&mut self, prefix: &[String], last: Option<String>) {
        if prefix.first().map(String::as_str) != Some("crate") {
            return;
        }
        let mut segments: Vec<String> = prefix[1..].to_vec();
        segments.extend(last.filter(|name| name != "self"));
        if !segments.is_empty() {
            self.paths.insert(segments);
        }
    }
}

impl<'ast> Visit<'ast> for CratePaths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_test_only(item_attrs(item)) {
            if let syn::Item::Mod(module) = item
                && module.content.is_none()
            {
                self.test_modules.push(module.ident.to_string());
            }
            return;
        }
        if let syn::Item::Use(item_use) = item {
            self.use_tree(&mut Vec::new(), &item_use.tree);
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.first().map(String::as_str) == Some("crate") && segments.len() > 1 {
            self.paths.insert(segments[1..].to_vec());
        }
        syn::visit::visit_path(self, path);
    }
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `relay/bridge` for `src/relay/bridge.rs`, `relay` for `src/relay/mod.rs`.
fn module_key(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src");
    let key = relative
        .with_extension("")
        .to_string_lossy()
        .replace('\\', "/");
    key.strip_suffix("/mod").map(str::to_owned).unwrap_or(key)
}

/// The file a `crate::a::b::c` path lands in: the longest prefix that names a module file.
fn resolve(src: &Path, segments: &[String]) -> Option<String> {
    (1..=segments.len()).rev().find_map(|n| {
        let joined = segments[..n].join("/");
        (src.join(format!("{joined}.rs")).is_file() || src.join(&joined).join("mod.rs").is_file())
            .then_some(joined)
    })
}

/// The module graph (top-level modules) and the file graph (files inside one top-level module) of the crate at `src`.
fn graphs(src: &Path) -> (Graph, Graph) {
    let files = rust_files(src);
    let mut parsed = Vec::new();
    let mut test_files = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let syntax = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        let mut paths = CratePaths::default();
        paths.visit_file(&syntax);
        let key = module_key(src, file);
        for module in &paths.test_modules {
            // `mod name;` in lib.rs is `src/name.rs`; in `x.rs` or `x/mod.rs` it is `src/x/name.rs`.
            test_files.insert(if key == "lib" || key == "main" {
                module.clone()
            } else {
                format!("{key}/{module}")
            });
        }
        parsed.push((key, paths.paths));
    }
    let mut modules = Graph::new();
    let mut files_graph = Graph::new();
    for (key, paths) in parsed {
        if key.ends_with("_tests") || key.contains("_tests/") || test_files.contains(&key) {
            continue;
        }
        let top = key.split('/').next().unwrap_or_default().to_owned();
        for path in paths {
            let Some(target) = resolve(src, &path) else {
                continue;
            };
            let target_top = target.split('/').next().unwrap_or_default().to_owned();
            if target_top != top {
                modules.entry(top.clone()).or_default().insert(target_top);
            } else if target != key {
                files_graph.entry(key.clone()).or_default().insert(target);
            }
        }
    }
    (modules, files_graph)
}

/// The strongly connected components of `graph` with more than one node: its cycles (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<BTreeSet<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = BTreeSet::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.insert(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

/// The edges among the members of one cycle, one per line, for the failure message.
fn describe(graph: &Graph, cycle: &BTreeSet<String>) -> String {
    cycle
        .iter()
        .flat_map(|from| {
            graph
                .get(from)
                .into_iter()
                .flatten()
                .filter(|to| cycle.contains(*to))
                .map(move |to| format!("  {from} -> {to}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_modules_of_the_crate_depend_on_each_other_one_way_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");

    let (modules, files) = graphs(&src);

    assert!(
        modules.contains_key("http") && modules["http"].contains("relay"),
        "the graph was read (http uses relay): {modules:?}"
    );
    let mut report = Vec::new();
    for cycle in cycles(&modules) {
        report.push(format!(
            "cycle among top-level modules: {cycle:?}\n{}",
            describe(&modules, &cycle)
        ));
    }
    for cycle in cycles(&files) {
        report.push(format!(
            "cycle among files: {cycle:?}\n{}",
            describe(&files, &cycle)
        ));
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
        }
        graph
    };

    let chain = cycles(&graph(&[
        ("http", "relay"),
        ("relay", "calls"),
        ("http", "calls"),
    ]));
    let cycle = cycles(&graph(&[
        ("config", "relay"),
        ("relay", "calls"),
        ("calls", "config"),
        ("http", "calls"),
    ]));

    assert!(chain.is_empty(), "{chain:?}");
    assert_eq!(
        cycle,
        vec![BTreeSet::from([
            "calls".to_owned(),
            "config".to_owned(),
            "relay".to_owned()
        ])]
    );
}

#[test]
fn crate_paths_are_read_from_use_trees_and_code_but_not_from_test_modules() {
    let syntax = syn::parse_file(
        r#"
        use crate::calls::{live::LiveCalls, EndReason};
        use crate::relay::{self, bridge::*};
        fn f() { crate::config::load(); }
        #[cfg(test)]
        mod tests { use crate::http::state::AppState; }
        #[cfg(test)]
        mod test_support;
        "#,
    )
    .expect("valid Rust");
    let mut paths = CratePaths::default();

    paths.visit_file(&syntax);

    let tops: BTreeSet<&str> = paths.paths.iter().map(|p| p[0].as_str()).collect();
    assert_eq!(tops, BTreeSet::from(["calls", "config", "relay"]));
    assert!(paths.paths.contains(&vec![
        "calls".to_owned(),
        "live".to_owned(),
        "LiveCalls".to_owned()
    ]));
    assert_eq!(paths.test_modules, vec!["test_support".to_owned()]);
}
