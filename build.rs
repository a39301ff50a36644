// The browser app is embedded with include_dir, which does not tell cargo
// to rebuild when a file under assets/ changes.
fn main() {
    println!("cargo:rerun-if-changed=assets");
}
