//! The JSON documents of `memo stats`, `memo functions` and `memo verify`
//! (`--json`), public so the Python package's `Store.stats()`,
//! `Store.functions()` and `Store.verify()` return the same fields.

use std::path::Path;

use memo_core::{FunctionInfo, FunctionStats, Stats, VerifyReport};
use serde_json::{Value, json};

use crate::inspect::redact;
use crate::units::unix;

/// `memo stats --json` of the store at `dir`: its `stats` and the figures
/// of all its entries (`Store::select(&Selection::all())`).
#[must_use]
pub fn stats(dir: &Path, s: &Stats, all: &FunctionStats) -> Value {
    let ratio = hit_ratio(s);
    let remote = remote_url();
    json!({
        "dir": dir.display().to_string(),
        "entries": s.entries,
        "bytes": s.bytes,
        "live_bytes": s.bytes - s.dead_bytes - s.index_bytes,
        "dead_bytes": s.dead_bytes,
        "index_bytes": s.index_bytes,
        "raw_bytes": s.raw_bytes,
        "compression_ratio": compression_ratio(s.raw_bytes, s.bytes),
        "hits": s.hits,
        "misses": s.misses,
        "hit_ratio": ratio,
        "evictions": s.evictions,
        "bytes_reclaimed": s.bytes_reclaimed,
        "compute_secs": all.compute_time.as_secs_f64(),
        "compute_saved_secs": all.compute_saved.as_secs_f64(),
        "stale_entries": all.stale_entries,
        "remote": remote.as_deref().map(redact),
        "remote_hits": s.store_remote_hits,
        "remote_misses": s.store_remote_misses,
        "uploads": s.store_uploads,
    })
}

/// What the bytes would be uncompressed over what they are (1.0 with
/// nothing stored compressed, or nothing stored).
#[must_use]
pub fn compression_ratio(raw_bytes: u64, bytes: u64) -> f64 {
    if bytes == 0 {
        1.0
    } else {
        raw_bytes as f64 / bytes as f64
    }
}

/// `memo functions --json`: one object per registered function.
#[must_use]
pub fn functions(list: &[FunctionInfo]) -> Value {
    Value::Array(
        list.iter()
            .map(|f| {
                let s = &f.stats;
                json!({
                    "function": f.name,
                    "version": f.version,
                    "entries": s.entries,
                    "bytes": s.bytes,
                    "raw_bytes": s.raw_bytes,
                    "compression_ratio": compression_ratio(s.raw_bytes, s.bytes),
                    "hits": s.hits,
                    "misses": s.misses,
                    "compute_secs": s.compute_time.as_secs_f64(),
                    "compute_saved_secs": s.compute_saved.as_secs_f64(),
                    "stale_entries": s.stale_entries,
                    "stale_bytes": s.stale_bytes,
                    "last_used_unix": unix(s.last_used),
                    "first_run_unix": unix(Some(f.first_run)),
                    "last_run_unix": unix(Some(f.last_run)),
                })
            })
            .collect(),
    )
}

/// `memo verify --json`.
#[must_use]
pub fn verify(r: &VerifyReport) -> Value {
    json!({
        "entries_checked": r.entries_checked,
        "corrupt": r.corrupt,
        "segments_checked": r.segments_checked,
        "damaged_dead_records": r.damaged_dead_records,
        "problems": r.problems,
    })
}

/// Hits over lookups (0 before any lookup).
pub(crate) fn hit_ratio(s: &Stats) -> f64 {
    let lookups = s.hits + s.misses;
    if lookups == 0 {
        0.0
    } else {
        s.hits as f64 / lookups as f64
    }
}

/// `MEMO_REMOTE`, when set.
pub(crate) fn remote_url() -> Option<String> {
    std::env::var("MEMO_REMOTE").ok().filter(|u| !u.is_empty())
}
