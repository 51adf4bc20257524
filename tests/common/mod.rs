//! Shared by the tests: running the real `paysay` binary (here, and against the simulator
//! in [`shop`]), the client against the simulator ([`session`]), the daemon in the test's
//! process ([`daemon`]), and sounds for test voices ([`wav`]).
// Each test binary uses its own subset.
#![allow(dead_code)]

pub mod daemon;
pub mod session;
pub mod shop;
pub mod wav;

use std::path::{Path, PathBuf};
use std::process::Command;

/// `paysay` living in `root`: HOME, TMPDIR and the XDG config, state and cache dirs are
/// under it, so a test never touches the machine's own session, ledger or cache (nor leaves
/// a speech program's temporary file in /tmp when it kills paysay), and `PAYSAY_LOG` is
/// the test's own. The environment is the child's alone, so tests can run in parallel.
pub fn paysay_in(root: &Path) -> Command {
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paysay"));
    cmd.env("HOME", root)
        .env("TMPDIR", tmp)
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_STATE_HOME", root.join("state"))
        .env("XDG_CACHE_HOME", root.join("cache"))
        .env_remove("PAYSAY_LOG");
    cmd
}

/// [`paysay_in`] with ALSA's default device writing what is played to `capture` (see
/// `tests/asound-capture.conf`): a speaker for machines without a sound card.
pub fn paysay_capturing(root: &Path, capture: &Path) -> Command {
    let mut cmd = paysay_in(root);
    cmd.env("ALSA_CONFIG_PATH", capture_conf())
        .env("AUDIO_CAPTURE", capture);
    cmd
}

pub fn capture_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/asound-capture.conf")
}

/// The text of the one QR code in an image (PNG bytes, a screenshot).
pub fn decode_qr(image: &[u8]) -> String {
    let img = image::load_from_memory(image).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        img.width() as usize,
        img.height() as usize,
        |x, y| img.get_pixel(x as u32, y as u32)[0],
    );
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

/// A file made unwritable until dropped: mode 0400, and `chattr +i` as well for root, who
/// ignores modes. Made writable again whatever the test's outcome, so its temp dir goes.
pub struct Unwritable(PathBuf);

impl Unwritable {
    /// `None` as root where `chattr +i` is not allowed (no CAP_LINUX_IMMUTABLE, a
    /// filesystem without it): nothing can be made unwritable there.
    pub fn make(path: &Path) -> Option<Unwritable> {
        set_mode(path, 0o400);
        let guard = Unwritable(path.to_path_buf());
        let still_writable = std::fs::OpenOptions::new().append(true).open(path).is_ok();
        (!still_writable || chattr("+i", path)).then_some(guard)
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
        set_mode(&self.0, 0o600);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
