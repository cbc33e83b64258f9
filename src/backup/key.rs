//! The repository password: the target's `password_file`, or a key that
//! ballast generates once per target under the state directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::config::BackupTarget;

/// A password and where it came from (messages name the file, never the
/// secret).
pub(super) struct Password {
    pub secret: String,
    pub file: PathBuf,
}

/// Reads the target's password file, or the generated key of the target
/// (made on first use).
pub(super) fn load(target: &BackupTarget, state_dir: &Path) -> Result<Password> {
    match &target.password_file {
        Some(file) => read(file),
        None => {
            let file = generated_path(target, state_dir)?;
            if !file.exists() {
                generate(&file)?;
                tracing::warn!(
                    target = %target.name,
                    key_file = %file.display(),
                    "generated the password of backup target {:?} in {}; a host that \
                     restores these backups needs this same file (set it as the \
                     target's password_file there)",
                    target.name,
                    file.display()
                );
            }
            read(&file)
        }
    }
}

/// `<state_dir>/backup-keys/<target>.key`.
pub(crate) fn generated_path(target: &BackupTarget, state_dir: &Path) -> Result<PathBuf> {
    // Config validation already restricts names; a name is a file name here.
    if target.name.is_empty() || target.name.contains(['/', '\0']) || target.name.starts_with('.') {
        return Err(Error::Failed(format!(
            "backup target {:?}: the name cannot name a key file",
            target.name
        )));
    }
    Ok(state_dir.join("backup-keys").join(format!("{}.key", target.name)))
}

fn read(file: &Path) -> Result<Password> {
    let text = fs::read_to_string(file).map_err(|e| {
        Error::Unavailable(format!("reading the password file {}: {e}", file.display()))
    })?;
    // One trailing newline is the editor's, not the password's (as restic).
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(Error::Unavailable(format!(
            "the password file {} is empty; a repository password cannot be empty",
            file.display()
        )));
    }
    Ok(Password { secret: secret.to_string(), file: file.to_path_buf() })
}

/// Writes 32 random bytes, hex-encoded, to `file`: mode 0600 from the
/// start, durable, and never over an existing key (another thread or
/// process may have made it meanwhile: theirs wins).
fn generate(file: &Path) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        Error::Failed(format!("generating the backup key {}: {what}: {e}", file.display()))
    };
    let dir = file.parent().expect("a key file has a directory");
    fs::create_dir_all(dir).map_err(|e| fail("creating its directory", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| fail("restricting its directory", e))?;

    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| fail("random bytes", std::io::Error::other(e)))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file.file_name().unwrap().to_string_lossy(),
        hex::encode(&raw[..4])
    ));
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(hex::encode(raw).as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail("writing", e));
    }
    // RENAME_NOREPLACE: atomic, and an existing key is never replaced.
    let renamed = rustix::fs::renameat_with(
        rustix::fs::CWD,
        &tmp,
        rustix::fs::CWD,
        file,
        rustix::fs::RenameFlags::NOREPLACE,
    );
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        if e == rustix::io::Errno::EXIST {
            return Ok(());
        }
        return Err(fail("renaming", e.into()));
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| fail("syncing its directory", e))
}
