//! The layering of `src/` (docs/architecture.md): which top-level module may import which. Reads
//! the sources and fails on an import that points the wrong way, which would reopen a cycle.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module and the modules it may import (`crate::<module>`). Items of `lib.rs`
/// itself (such as `install_crypto_provider`) are open to all.
const LAYERS: &[(&str, &[&str])] = &[
    // Types, defaults, validation: imports nothing else in the crate.
    ("api", &[]),
    // The pure core: vocabulary shared by the planner and the adapters.
    ("core", &["api"]),
    // Adapters: one family of outside systems each; they never import each other.
    ("metrics", &["api", "core"]),
    ("router", &["api", "core"]),
    ("webhook", &["api", "core"]),
    ("notifier", &["api", "core"]),
    // Target kinds: observation of cached objects and the builders of what each kind needs.
    ("target", &["api", "core"]),
    // The kube-runtime wiring.
    (
        "controller",
        &[
            "api", "core", "metrics", "router", "webhook", "notifier", "target",
        ],
    ),
    // Stand-alone programs built on the library.
    ("loadtester", &["api", "core", "webhook"]),
    // The install bundle (manifests, RBAC rules and their evaluator), generated from the API.
    ("install", &["api"]),
    // The embedded API server imports nothing from the operator.
    ("cluster", &[]),
    ("demo", &["api", "core", "cluster"]),
    // `serin bench`: the embedded cluster and the controller binary, measured from outside.
    ("bench", &["api", "core", "cluster"]),
    // The command line sits on top of everything.
    (
        "cli",
        &[
            "api",
            "core",
            "metrics",
            "router",
            "webhook",
            "notifier",
            "target",
            "controller",
            "loadtester",
            "cluster",
            "demo",
            "install",
            "bench",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `crate::<name>` references in a source text, comments included (a doc link that points the
/// wrong way is a dependency too). A path into the embedded cluster's own crate
/// (`serin_cluster::`) counts as `cluster`, so that `api` cannot reach it around the re-export.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if text.contains("serin_cluster::") {
        out.insert("cluster".to_string());
    }
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// Module → (imported module → files that import it).
fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap_or(&f).to_path_buf();
        let first = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if !modules.contains(first.as_str()) {
            continue; // lib.rs, main.rs
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for r in crate_refs(&text) {
            if r != first && modules.contains(r.as_str()) {
                g.entry(first.clone())
                    .or_default()
                    .entry(r)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    g
}

#[test]
fn every_module_is_in_the_layer_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut unknown = Vec::new();
    for e in std::fs::read_dir(&src).expect("src/ is readable").flatten() {
        let name = e
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !["lib", "main"].contains(&name.as_str()) && !known.contains(name.as_str()) {
            unknown.push(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS in tests/architecture.rs: {unknown:?}"
    );
}

#[test]
fn imports_point_only_down_the_layers() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for (from, deps) in graph() {
        for (to, files) in deps {
            if !allowed[from.as_str()].contains(&to.as_str()) {
                wrong.push(format!("{from} -> {to} (in {files:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering of docs/architecture.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layer_table_has_no_cycle() {
    // Depth-first search over the allowed edges: the table itself must be a DAG, or the check
    // above would allow a cycle.
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    fn visit<'a>(
        m: &'a str,
        allowed: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        assert!(!path.contains(&m), "cycle in LAYERS: {path:?} -> {m}");
        path.push(m);
        for d in allowed.get(m).copied().unwrap_or(&[]) {
            visit(d, allowed, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for (m, _) in LAYERS {
        visit(m, &allowed, &mut Vec::new(), &mut done);
    }
}

#[test]
fn a_wrong_way_import_is_seen() {
    // The scanner itself: a reference in any form counts.
    let refs = crate_refs("use crate::controller::plan::Routes;\n/// [`crate::router::x`]\n");
    assert!(refs.contains("controller") && refs.contains("router"));
    assert!(crate_refs("use serin_cluster::schema;").contains("cluster"));
}

/// A source file's module path under `src/` (`core/plan/mod.rs` → `["core", "plan"]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts
        .last()
        .is_some_and(|l| ["mod", "lib", "main"].contains(&l.as_str()))
    {
        parts.pop();
    }
    parts
}

/// The module paths a source text names in code (`crate::…`, `super::…`), resolved against
/// `known` to the longest module prefix. Comments are left out here: a doc link between two
/// sibling files is not a build dependency (the layer check above still counts them).
fn file_refs(text: &str, me: &[String], known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let resolve = |path: Vec<String>| {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| known.contains(p))
    };
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| !seg.is_empty())
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if let Some(p) = resolve(ident(&code[i + "crate::".len()..])) {
            out.insert(p);
        }
    }
    for (i, _) in code.match_indices("super::") {
        if code[..i].ends_with("super::") {
            continue; // counted from the first `super::` of the chain
        }
        let mut rest = &code[i..];
        let mut base = me.to_vec();
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        base.extend(ident(rest));
        if let Some(p) = resolve(base) {
            out.insert(p);
        }
    }
    out
}

#[test]
fn no_two_source_files_import_each_other_even_indirectly() {
    // Within a layer too: a registry that names every provider lives apart from the trait the
    // providers implement. A module and its own submodules may refer to each other.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .into_iter()
        .map(|f| (module_path(f.strip_prefix(&src).unwrap_or(&f)), f))
        .collect();
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    let related = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = modules
        .iter()
        .map(|(m, f)| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let to = file_refs(&text, m, &known)
                .into_iter()
                .filter(|t| !related(m, t))
                .collect();
            (m.clone(), to)
        })
        .collect();
    // Depth-first search; a grey node met again closes a cycle.
    fn visit(
        m: &[String],
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(start) = path.iter().position(|p| p == m) {
            let names: Vec<String> = path[start..].iter().map(|p| p.join("::")).collect();
            cycles.push(format!("{} -> {}", names.join(" -> "), m.join("::")));
            return;
        }
        path.push(m.to_vec());
        for d in edges.get(m).into_iter().flatten() {
            visit(d, edges, path, done, cycles);
        }
        path.pop();
        done.insert(m.to_vec());
    }
    let (mut done, mut cycles) = (BTreeSet::new(), Vec::new());
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_file_scanner_resolves_crate_and_super_paths() {
    let known: BTreeSet<Vec<String>> = [
        vec!["metrics"],
        vec!["metrics", "provider"],
        vec!["metrics", "datadog"],
        vec!["core"],
        vec!["core", "plan"],
    ]
    .into_iter()
    .map(|p| p.into_iter().map(String::from).collect())
    .collect();
    let me: Vec<String> = vec!["metrics".into(), "datadog".into()];
    let refs = file_refs(
        "use super::provider::{Provider, QueryContext};\nuse crate::core::plan::Routes;\n// crate::metrics::registry\n",
        &me,
        &known,
    );
    let names: BTreeSet<String> = refs.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        names,
        BTreeSet::from(["metrics::provider".to_string(), "core::plan".to_string()])
    );
}
