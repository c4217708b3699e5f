//! Compiles every folder under templates/certificates/ into the binary, so shipped certificate
//! templates need no code change and the program runs from any working directory.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // sqlx::migrate! embeds the migration files; with a build script present, Cargo would not
    // notice a new one without this.
    println!("cargo:rerun-if-changed=migrations");
    let root = Path::new("templates/certificates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::from(
        "/// A shipped template's files: (file name, bytes).\ntype Files = &'static [(&'static str, &'static [u8])];\n/// Shipped templates by name.\npub static SHIPPED: &[(&str, Files)] = &[\n",
    );
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .expect("templates/certificates exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        write!(out, "    ({name:?}, &[").unwrap();
        for file in files {
            println!("cargo:rerun-if-changed={}", file.display());
            let fname = file.file_name().unwrap().to_string_lossy().into_owned();
            // Relative to the package, not absolute: the generated file must stay valid when the
            // same target directory builds another checkout.
            let rel = format!("/templates/certificates/{name}/{fname}");
            write!(
                out,
                "({fname:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {rel:?}))), "
            )
            .unwrap();
        }
        out.push_str("]),\n");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("shipped_templates.rs");
    std::fs::write(dest, out).unwrap();
}
