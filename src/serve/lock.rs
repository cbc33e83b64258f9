//! One daemon per state directory: an exclusive `flock` on
//! `STATE/ballast.lock`, taken before the store is opened or start-up
//! recovery touches the pools. A second daemon started on a live state
//! directory would otherwise clear the pools' staging areas under the
//! first one's running jobs before finding its sockets taken.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

/// Held for the daemon's life; the kernel drops the lock when the process
/// ends, however it ends.
pub struct StateLock {
    _file: File,
}

/// Takes the state directory's lock, or says which daemon holds it.
pub fn take(state_dir: &Path) -> Result<StateLock, String> {
    let path = state_dir.join("ballast.lock");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(&path)
        .map_err(|e| format!("state directory lock {}: {e}", path.display()))?;
    if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e != rustix::io::Errno::WOULDBLOCK {
            return Err(format!("state directory lock {}: {e}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim().parse::<u32>() {
            Ok(pid) => format!("another ballast daemon (pid {pid})"),
            Err(_) => "another ballast daemon".to_string(),
        };
        return Err(format!(
            "{holder} is using the state directory {}: stop it first, or give this daemon \
             its own --state-dir, --plugin-socket and --admin-socket",
            state_dir.display()
        ));
    }
    let pid = std::process::id();
    let written =
        file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{pid}"));
    if let Err(e) = written {
        return Err(format!("state directory lock {}: {e}", path.display()));
    }
    Ok(StateLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_state_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = take(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open
        // in this process conflicts as another process's would.
        let refused = take(dir.path()).err().unwrap();
        assert!(refused.contains(&format!("pid {}", std::process::id())), "{refused}");
        assert!(refused.contains("--state-dir"), "{refused}");
        drop(first);
        take(dir.path()).unwrap();
    }
}
