//! Records the compiler version and the resolved versions of the compared
//! crates, so the report can print them.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=COMPARE_RUSTC_VERSION={version}");

    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut name = String::new();
    let mut found = Vec::new();
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = n.trim_matches('"').to_string();
        } else if let Some(v) = line.strip_prefix("version = ")
            && ["automerge", "yrs", "loro", "redb", "syncline"].contains(&name.as_str())
        {
            found.push(format!("{name} {}", v.trim_matches('"')));
        }
    }
    println!(
        "cargo:rustc-env=COMPARE_CRATE_VERSIONS={}",
        found.join(", ")
    );
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
}
