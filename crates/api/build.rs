//! Embeds the built player page (`frontend/dist`) into the crate: writes `$OUT_DIR/page.rs`, a
//! table of `(path, content, etag)` with one `include_bytes!` per file. A missing `dist` gives an
//! empty table (the build still succeeds; the server then answers a page saying how to build it).
//! Source maps are left out: they are for page development (`--frontend-dir`), not for users.
//! `HLSMARK_PAGE_DIR` names another directory to embed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=HLSMARK_PAGE_DIR");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = std::env::var_os("HLSMARK_PAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../frontend/dist"));
    // Cargo scans a watched directory recursively. Watching `dist` itself when it is missing
    // would re-run this script on every build; its parent notices it appear.
    let watched = if dist.is_dir() {
        dist.clone()
    } else {
        dist.parent()
            .map_or_else(|| dist.clone(), Path::to_path_buf)
    };
    println!("cargo:rerun-if-changed={}", watched.display());

    let mut files = Vec::new();
    if dist.is_dir() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut out = String::from(
        "/// The built page: (path below `dist`, bytes, strong ETag).\n\
         pub static FILES: &[(&str, &[u8], &str)] = &[\n",
    );
    for (rel, abs) in &files {
        let bytes = std::fs::read(abs).unwrap_or_default();
        let etag = format!("\"{:x}-{:016x}\"", bytes.len(), fnv1a(&bytes));
        let _ = writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?}), {etag:?}),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    let _ = writeln!(
        out,
        "/// Where the page was embedded from (for the not-built message).\npub const SOURCE: &str = {:?};",
        dist.display().to_string()
    );
    let target = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("page.rs");
    if let Err(e) = std::fs::write(&target, out) {
        println!("cargo:warning=cannot write {}: {e}", target.display());
        std::process::exit(1);
    }
}

/// Every regular file below `dir` as (path relative to `root` with `/`, absolute path).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(root, &path, out);
        } else if kind.is_file() && path.extension().is_none_or(|e| e != "map") {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let abs = std::fs::canonicalize(&path).unwrap_or(path);
            out.push((rel.join("/"), abs));
        }
    }
}

/// FNV-1a, 64 bits: enough to tell two builds of a file apart in an ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
