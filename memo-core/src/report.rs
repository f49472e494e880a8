//! What memo says to the user outside `tracing`: one line on stderr for a
//! problem that changes what a program gets (caching off, a remote tier
//! off, misses not stored, an unreadable data file), because most programs
//! install no `tracing` subscriber. The lowest floor of the crate: it
//! imports only the error type.

use std::path::Path;

use crate::error::Error;

/// Says that caching is off because the store at `dir` cannot be opened:
/// through `tracing`, and once on stderr when no `tracing` subscriber is
/// installed to show it (most programs have none), unless `MEMO_QUIET=1`.
/// With `MEMO_STRICT=1` it panics instead, so the call fails rather than
/// run uncached. Called once per store and process.
pub(crate) fn caching_off(dir: &Path, e: &Error) {
    let message = format!(
        "memo: caching is off: the store at {} cannot be opened: {e}",
        dir.display()
    );
    tracing::error!(dir = %dir.display(), error = %e, "memo: the store cannot be opened; caching is off");
    assert!(
        !env_flag("MEMO_STRICT"),
        "{message} (MEMO_STRICT is set, so the call fails instead of running uncached)"
    );
    on_stderr(&format!(
        "{message}; every call runs uncached (MEMO_QUIET=1 hides this line, MEMO_STRICT=1 fails instead)"
    ));
}

/// Says, through `tracing` and on stderr as `caching_off` does, that the
/// remote tier configured for a store (`MEMO_REMOTE`) cannot be used at
/// all (an unknown scheme, an engine this build lacks, a bad URL), so the
/// store works without it. Called once per store and process.
pub(crate) fn remote_off(e: &Error) {
    tracing::error!(error = %e, "memo: the remote tier is off");
    on_stderr(&format!(
        "memo: the remote tier is off: {e}; the local store works on its own \
         (MEMO_QUIET=1 hides this line)"
    ));
}

/// Says, through `tracing` and once on stderr as `caching_off` does, that
/// the read-only store at `dir` computes its misses without storing them.
/// Called once per store and process, at its first miss: a read-only
/// store that only serves hits says nothing.
pub(crate) fn misses_not_stored(dir: &Path) {
    tracing::warn!(dir = %dir.display(), "memo: the store is read-only here; misses are computed and not stored");
    on_stderr(&format!(
        "memo: the store at {} is read-only here (this process cannot write to it): hits are \
         served, misses are computed and not stored (MEMO_QUIET=1 hides this line)",
        dir.display()
    ));
}

/// Prints `message` on stderr unless a `tracing` subscriber shows memo's
/// messages already or `MEMO_QUIET` is set.
pub(crate) fn on_stderr(message: &str) {
    if !env_flag("MEMO_QUIET") && !tracing::dispatcher::has_been_set() {
        eprintln!("{message}");
    }
}

/// Whether environment variable `name` is set to something other than
/// empty, `0`, `false` or `off`.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "off"))
}
