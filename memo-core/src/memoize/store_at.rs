//! The store of `#[memoize(dir = "...")]`: one per directory and process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};

use crate::Store;

/// The store of `#[memoize(dir = "...")]`: opened on first use, once per
/// directory and process whichever functions name it. If it cannot be
/// opened, it caches nothing and says why once.
pub struct StoreAt {
    dir: &'static str,
    store: OnceLock<&'static Store>,
}

impl StoreAt {
    /// The store at `dir` (relative to the working directory at first use).
    #[must_use]
    pub const fn new(dir: &'static str) -> StoreAt {
        StoreAt {
            dir,
            store: OnceLock::new(),
        }
    }

    /// The opened store.
    pub fn get(&self) -> &'static Store {
        self.store.get_or_init(|| open_shared(self.dir))
    }
}

fn open_shared(dir: &str) -> &'static Store {
    static OPEN: LazyLock<Mutex<HashMap<PathBuf, &'static Store>>> = LazyLock::new(Mutex::default);
    let path = std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir));
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(s) = open.get(&path) {
        return s;
    }
    let store = Store::open_from_env(&path);
    // One per directory for the life of the process, like `Store::global`.
    let store: &'static Store = Box::leak(Box::new(store));
    open.insert(path, store);
    store
}
