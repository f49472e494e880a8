//! The reading commands: `stats`, `functions`, `verify`. They change
//! nothing in the store and take its writer lock only to confirm what
//! looks like damage.

use std::path::Path;

use comfy_table::{CellAlignment, Table, presets};
use memo_core::Selection;

use crate::open::{failed, open};
use crate::units::{ago, count, duration, size};
use crate::{Failure, Outcome, out, print_json, progress};

pub(crate) fn stats(dir: &Path, json: bool) -> Outcome {
    let store = open(dir, memo_core::StoreBuilder::remote_from_env)?;
    let s = store.stats();
    // Compute saved comes from the entries themselves (hits x cost).
    let all = store
        .select(&Selection::all())
        .map_err(|e| failed(dir, &e))?;
    let ratio = crate::json::hit_ratio(&s);
    let remote = crate::json::remote_url();
    if json {
        print_json(&crate::json::stats(dir, &s, &all));
        return Ok(());
    }
    let live = s.bytes - s.dead_bytes - s.index_bytes;
    out!("store          {}", dir.display());
    out!("entries        {}", count(s.entries));
    out!(
        "bytes          {} (live {}, dead {}, index {})",
        size(s.bytes),
        size(live),
        size(s.dead_bytes),
        size(s.index_bytes)
    );
    if s.raw_bytes > s.bytes {
        out!(
            "compressed     {} uncompressed ({:.2}x), {} saved",
            size(s.raw_bytes),
            crate::json::compression_ratio(s.raw_bytes, s.bytes),
            size(s.raw_bytes - s.bytes)
        );
    }
    out!(
        "lookups        {} hits, {} misses ({:.1}% hits)",
        count(s.hits),
        count(s.misses),
        100.0 * ratio
    );
    out!("evictions      {}", count(s.evictions));
    out!(
        "compute        {} stored, {} saved by hits",
        duration(all.compute_time),
        duration(all.compute_saved)
    );
    out!(
        "stale          {} entries of code that no longer runs ({})",
        count(all.stale_entries),
        size(all.stale_bytes)
    );
    let remote_used = s.store_remote_hits + s.store_remote_misses + s.store_uploads > 0;
    if remote.is_some() || remote_used {
        out!(
            "remote         {} hits, {} misses, {} uploads{}",
            count(s.store_remote_hits),
            count(s.store_remote_misses),
            count(s.store_uploads),
            remote.map_or_else(String::new, |url| format!(
                " ({}, MEMO_REMOTE)",
                redact(&url)
            ))
        );
    }
    Ok(())
}

/// A URL without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

pub(crate) fn functions(dir: &Path, json: bool) -> Outcome {
    let store = open(dir, |b| b)?;
    let list = store.functions().map_err(|e| failed(dir, &e))?;
    if json {
        print_json(&crate::json::functions(&list));
        return Ok(());
    }
    if list.is_empty() {
        out!("no memoized function has run with {}", dir.display());
    } else {
        let mut t = Table::new();
        t.load_style(presets::NOTHING);
        t.set_header(vec![
            "function",
            "entries",
            "bytes",
            "ratio",
            "hits",
            "misses",
            "compute",
            "saved",
            "stale",
            "last used",
        ]);
        for f in &list {
            let s = &f.stats;
            t.add_row(vec![
                f.name.clone(),
                count(s.entries),
                size(s.bytes),
                format!(
                    "{:.2}x",
                    crate::json::compression_ratio(s.raw_bytes, s.bytes)
                ),
                count(s.hits),
                count(s.misses),
                duration(s.compute_time),
                duration(s.compute_saved),
                count(s.stale_entries),
                ago(s.last_used),
            ]);
        }
        for c in 1..9 {
            if let Some(col) = t.column_mut(c) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        out!("{t}");
    }
    let total = store.stats().entries;
    let theirs: u64 = list.iter().map(|f| f.stats.entries).sum();
    if total > theirs {
        out!(
            "\n{} more entries belong to no registered function (keys made with Key::of, or code that ran before the registry)",
            count(total - theirs)
        );
    }
    Ok(())
}

pub(crate) fn verify(dir: &Path, json: bool) -> Outcome {
    let store = open(dir, |b| b)?;
    let spin = progress::spinner("verifying");
    let r = store.verify().map_err(|e| failed(dir, &e))?;
    spin.finish_and_clear();
    let clean = r.is_clean() && r.damaged_dead_records == 0;
    if json {
        print_json(&crate::json::verify(&r));
    } else {
        for p in &r.problems {
            out!("problem: {p}");
        }
        if r.damaged_dead_records > 0 {
            out!(
                "problem: {} damaged records that no entry uses (the disk may be failing)",
                r.damaged_dead_records
            );
        }
        out!(
            "checked {} entries in {} segment{}: {}",
            count(r.entries_checked),
            count(r.segments_checked),
            if r.segments_checked == 1 { "" } else { "s" },
            if clean {
                "no damage".to_owned()
            } else {
                format!(
                    "{} damaged entries, {} problems",
                    r.corrupt,
                    r.problems.len()
                )
            }
        );
    }
    if clean {
        Ok(())
    } else {
        Err(Failure::Found(String::new()))
    }
}
