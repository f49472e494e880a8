//! Helpers shared by memo's integration tests.

/// A fresh store directory for one test.
///
/// # Panics
///
/// If the system's temporary directory cannot be written.
#[must_use]
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("memo-test-")
        .tempdir()
        .expect("temp dir")
}

/// Copies the directory tree `from` to `to` (a store, to damage or reopen
/// a copy).
///
/// # Panics
///
/// If a file cannot be read or written.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

/// A small deterministic random generator (xorshift64), so a failing
/// damage or kill sequence replays the same way.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed.
    #[must_use]
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// The next number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
