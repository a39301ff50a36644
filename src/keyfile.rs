//! Secret key files in the data directory, created with mode 0600.

use std::io::Write;
use std::path::Path;

pub fn load_or_create(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return hex::decode(text.trim()).map_err(|_| {
            std::io::Error::other(format!("{} is not a valid key file", path.display()))
        });
    }
    let mut bytes = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(hex::encode(&bytes).as_bytes())?;
    f.sync_all()?;
    Ok(bytes)
}
