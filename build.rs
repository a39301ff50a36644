//! Build-time facts for `confab version`, and a rebuild when assets change.

use std::process::Command;

fn main() {
    // The browser app is embedded with include_dir, which does not tell cargo
    // to rebuild when a file under assets/ changes.
    println!("cargo:rerun-if-changed=assets");

    // Git commit: CONFAB_GIT_COMMIT wins (builds from a source tarball), else
    // `git rev-parse`, else "unknown". Rerun when HEAD moves.
    println!("cargo:rerun-if-env-changed=CONFAB_GIT_COMMIT");
    let commit = std::env::var("CONFAB_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Only files that exist: cargo treats a missing one as changed, which
    // would rerun this script, and so rebuild the crate, on every build
    // (a repository without packed-refs, or a branch only in packed-refs).
    // A ref that moves into or out of packed-refs deletes or creates a
    // watched file, which reruns the script and updates the list.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let mut watch = vec![format!("{git_dir}/HEAD")];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(format!("{git_dir}/{head_ref}"));
        }
        watch.push(format!("{git_dir}/packed-refs"));
        for path in watch {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rustc-env=CONFAB_GIT_COMMIT={commit}");

    // Build date: SOURCE_DATE_EPOCH (reproducible builds) or now, in UTC.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=CONFAB_BUILD_DATE={}", rfc3339(secs));

    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=CONFAB_TARGET={target}");
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=CONFAB_PROFILE={profile}");
    let static_crt = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .unwrap_or_default()
        .split(',')
        .any(|f| f == "crt-static");
    println!(
        "cargo:rustc-env=CONFAB_LINKAGE={}",
        if static_crt { "static" } else { "dynamic" }
    );

    // Enabled cargo features of this package, as `a,b` (empty when none).
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_string))
        .map(|f| f.to_lowercase().replace('_', "-"))
        .collect();
    features.sort();
    println!("cargo:rustc-env=CONFAB_FEATURES={}", features.join(","));
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, no dependency).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
