//! Records the git revision the binary was built from, for `--version`
//! (`BALLAST_GIT_REV` wins, for builds from a source tarball).

fn main() {
    println!("cargo:rerun-if-env-changed=BALLAST_GIT_REV");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let rev = std::env::var("BALLAST_GIT_REV").ok().filter(|r| !r.is_empty()).or_else(|| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!("cargo:rustc-env=BALLAST_GIT_REV={}", rev.unwrap_or_else(|| "unknown".into()));
}
