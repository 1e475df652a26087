//! Full disks for the fault tests: a tmpfs mounted where a test wants it (root only), unmounted
//! when its guard drops, and a filler that writes until the file system is full.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process runs as root (only root may mount a tmpfs; the test machines do).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// Mounts a tmpfs of `size` (`8m`) on the existing directory `dir`; `false` when mount failed.
pub fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts (lazily) the directory when dropped.
#[derive(Debug)]
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until its file system is full.
pub fn fill(path: &Path) {
    let Ok(mut f) = std::fs::File::create(path) else {
        return;
    };
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
}
