//! The stores of `#[memoize(dir = "...")]` and of `#[memoize]` with no
//! store option: one per directory and process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Store;

/// The store of a memoized function, opened on first use, once per
/// directory and process whichever functions name it. If it cannot be
/// opened, it caches nothing and says why once.
pub struct StoreAt {
    at: At,
    store: OnceLock<&'static Store>,
}

/// Where a function's store is.
enum At {
    /// `#[memoize(dir = "...")]`.
    Dir(&'static str),
    /// The default store of a function of the crate at this manifest
    /// directory (`Store::default_dir_for` its program's project).
    Program(&'static str),
}

impl StoreAt {
    /// The store at `dir` (relative to the working directory at first use).
    #[must_use]
    pub const fn new(dir: &'static str) -> StoreAt {
        StoreAt {
            at: At::Dir(dir),
            store: OnceLock::new(),
        }
    }

    /// The default store of a function defined in the crate whose
    /// `CARGO_MANIFEST_DIR` is `manifest_dir` (`#[memoize]` without a
    /// store option): its project's `.memo` wherever the program is started
    /// from ([`Store::default_dir_for`]).
    #[must_use]
    pub const fn program(manifest_dir: &'static str) -> StoreAt {
        StoreAt {
            at: At::Program(manifest_dir),
            store: OnceLock::new(),
        }
    }

    /// The opened store.
    pub fn get(&self) -> &'static Store {
        self.store.get_or_init(|| match self.at {
            At::Dir(d) => Store::open_shared(Path::new(d)),
            At::Program(m) => {
                Store::open_shared(&Store::default_dir_for(program_root(m).as_deref()))
            }
        })
    }
}

/// The root of the project a crate was built in, if it still exists: the
/// nearest directory from its manifest up holding `Cargo.lock` (a
/// workspace's root), else the crate's own directory. `None` for a crate
/// of cargo's registry or git checkouts (a dependency's function: the
/// program's project is not known from it).
fn program_root(manifest_dir: &str) -> Option<PathBuf> {
    let m = Path::new(manifest_dir);
    let text = manifest_dir.replace('\\', "/");
    if text.contains("/.cargo/registry/") || text.contains("/.cargo/git/") || !m.is_dir() {
        return None;
    }
    Some(
        m.ancestors()
            .find(|d| d.join("Cargo.lock").is_file())
            .unwrap_or(m)
            .to_path_buf(),
    )
}
