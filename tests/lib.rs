//! Helpers shared by memo's integration tests.

pub mod servers;

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

/// A real file system of its own (a tmpfs), which a test fills and then
/// remounts read-only; unmounted on drop. Mounting needs root: elsewhere
/// [`Mount::tmpfs`] says so loudly and gives `None`, except under
/// `CI=true`, where it fails.
pub struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    /// A fresh 256 MiB tmpfs, writable.
    ///
    /// # Panics
    ///
    /// Under `CI=true`, if it cannot be mounted.
    #[must_use]
    pub fn tmpfs() -> Option<Mount> {
        let dir = tempdir();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                let msg = format!(
                    "cannot mount a tmpfs ({why}): the read-only store tests need root (CI runs as root)"
                );
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
                eprintln!("\n*** SKIPPED: {msg} ***\n");
                None
            }
        }
    }

    /// Where it is mounted.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Remounts it read-only: every write below it fails with `EROFS`,
    /// for root too.
    ///
    /// # Panics
    ///
    /// If the remount fails.
    pub fn read_only(&self) {
        let st = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "remount read-only failed");
        assert!(
            std::fs::write(self.path().join("probe"), b"x").is_err(),
            "the remounted tmpfs still takes writes"
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazily: a child that still has a file open must not keep the
        // mount (and the test's temporary directory) around.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Appends `line` to the log file named by `MEMO_TEST_LOG`, in one write
/// (atomic with `O_APPEND`, so processes can share the log); nothing if
/// the variable is unset.
///
/// # Panics
///
/// If the log cannot be written.
pub fn log_line(line: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("MEMO_TEST_LOG") else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the log");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write the log");
}

/// Runs `cmd` to its end and returns its output, failing the test with
/// the child's stderr if it did not succeed.
///
/// # Panics
///
/// If the child cannot be started or exits unsuccessfully.
pub fn succeed(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("start the child process");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds a program of its own: a crate named `name` in `krate` whose
/// `src/main.rs` is `main`, depending on this workspace's memo-core and on
/// `deps` (more `[dependencies]` lines), with the workspace's lock file and
/// offline, into `target/<name>` of the workspace (kept between runs, so
/// only the first build compiles memo-core). Returns the binary.
///
/// # Panics
///
/// If the build fails (with the source and the compiler's output).
#[must_use]
pub fn build_program(
    krate: &std::path::Path,
    name: &str,
    deps: &str,
    main: &str,
) -> std::path::PathBuf {
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf();
    std::fs::create_dir_all(krate.join("src")).expect("create the crate");
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nmemo-core = {{ path = \"{}\" }}\n{deps}\n\n[workspace]\n",
            ws.join("memo-core").display()
        ),
    )
    .expect("write Cargo.toml");
    std::fs::copy(ws.join("Cargo.lock"), krate.join("Cargo.lock")).expect("copy Cargo.lock");
    std::fs::write(krate.join("src/main.rs"), main).expect("write main.rs");
    let target = ws.join("target").join(name);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(krate)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building:\n{main}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join(name)
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

/// What a writer killed at a random moment logged, one line after each call
/// returned: `+i` for a put of entry `i`, `-i` for a remove.
pub struct KillLog {
    /// Entries whose put returned (and that no logged remove took back).
    pub put: Vec<u32>,
    /// Entries whose remove returned, or may have been under way at the
    /// kill (either outcome is correct for those: the call never returned).
    pub removed: std::collections::HashSet<u32>,
    /// The log's other lines.
    pub other: Vec<String>,
}

impl KillLog {
    /// Reads `log`; `removes_after(i)` is the entry the writer removes right
    /// after putting `i`, if any.
    ///
    /// # Panics
    ///
    /// If a `+`/`-` line does not hold a number.
    pub fn read(log: &std::path::Path, removes_after: impl Fn(u32) -> Option<u32>) -> KillLog {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let mut k = KillLog {
            put: Vec::new(),
            removed: std::collections::HashSet::new(),
            other: Vec::new(),
        };
        let mut last = None;
        // The last line may be torn by the kill: only whole lines count.
        for line in text.lines().take(text.matches('\n').count()) {
            if let Some(i) = line.strip_prefix('+') {
                let i: u32 = i.parse().expect("entry number");
                k.put.push(i);
                last = Some(i);
            } else if let Some(i) = line.strip_prefix('-') {
                k.removed.insert(i.parse().expect("entry number"));
                last = None;
            } else {
                k.other.push(line.to_owned());
            }
        }
        // The put after which a remove follows was the last thing logged:
        // that remove may have been under way.
        if let Some(r) = last.and_then(removes_after) {
            k.removed.insert(r);
            k.put.retain(|&p| p != r);
        }
        k
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
