//! The commands that remove entries: `trim` (down to limits) and `clear`
//! (by selection).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use memo_core::{Policy, Selection};
use serde_json::json;

use crate::open::{failed, open};
use crate::units::{entries, parse_duration, parse_size, size};
use crate::{Failure, Outcome, out, print_json, progress};

#[derive(Args, Debug)]
pub(crate) struct TrimArgs {
    /// Bytes the store may take (10GiB, 500M)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_bytes: Option<u64>,
    /// Entries the store may hold
    #[arg(long, value_name = "N")]
    max_entries: Option<u64>,
    /// Evict entries unused for longer than this (30d, 12h)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// Which entries go first
    #[arg(long, value_enum, default_value_t = PolicyArg::Lru)]
    policy: PolicyArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PolicyArg {
    /// Least recently used
    Lru,
    /// Least frequently used
    Lfu,
    /// Cheapest to recompute per byte, then least recently used
    CostAware,
}

#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, printed as written"
)]
#[derive(Args, Debug)]
pub(crate) struct ClearArgs {
    /// Only this function's entries: its path or a unique ::-suffix (fit, model::fit)
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// Only entries of code (or a `version`) that no longer runs
    #[arg(long)]
    stale: bool,
    /// Only entries unused for longer than this (30d, 12h)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// Remove without asking
    #[arg(long)]
    yes: bool,
}

pub(crate) fn trim(dir: &Path, a: &TrimArgs, json: bool) -> Outcome {
    let policy = match a.policy {
        PolicyArg::Lru => Policy::Lru,
        PolicyArg::Lfu => Policy::Lfu,
        PolicyArg::CostAware => Policy::CostAware,
    };
    let store = open(dir, |mut b| {
        b = b.policy(policy);
        if let Some(m) = a.max_bytes {
            b = b.max_bytes(m);
        }
        if let Some(m) = a.max_entries {
            b = b.max_entries(m);
        }
        if let Some(m) = a.max_age {
            b = b.max_age(m);
        }
        b
    })?;
    let before = store.stats();
    let spin = progress::spinner("trimming");
    store.trim().map_err(|e| failed(dir, &e))?;
    spin.finish_and_clear();
    let after = store.stats();
    let removed = before.entries.saturating_sub(after.entries);
    if json {
        print_json(&json!({
            "entries_before": before.entries,
            "entries_after": after.entries,
            "bytes_before": before.bytes,
            "bytes_after": after.bytes,
            "removed": removed,
            "evictions": after.evictions.saturating_sub(before.evictions),
        }));
    } else {
        out!(
            "{}: {} -> {}, {} (removed {})",
            dir.display(),
            entries(before.entries),
            entries(after.entries),
            size(after.bytes),
            entries(removed)
        );
    }
    Ok(())
}

pub(crate) fn clear(dir: &Path, a: &ClearArgs, json: bool) -> Outcome {
    let store = open(dir, |b| b)?;
    let mut sel = Selection::all();
    if let Some(f) = &a.function {
        sel = sel.function(f.clone());
    }
    if a.stale {
        sel = sel.stale();
    }
    if let Some(d) = a.older_than {
        sel = sel.older_than(d);
    }
    let whole = sel == Selection::all();
    let what = store.select(&sel).map_err(|e| failed(dir, &e))?;
    // Entries outside any function (Key::of keys) count when all go.
    let (n, bytes) = if whole {
        let s = store.stats();
        (s.entries, s.bytes)
    } else {
        (what.entries, what.bytes)
    };
    let described = describe(a);
    if !a.yes {
        if n == 0 {
            report(json, 0, 0, &described);
            return Ok(());
        }
        let ask = !json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        let refusal = "refusing to remove without --yes when not run from a terminal";
        if json {
            // The answer is the JSON document: what would go, and why not.
            print_json(&json!({
                "removed": 0,
                "would_remove": n,
                "bytes": bytes,
                "selection": described,
                "error": format!("{refusal} (--json never asks)"),
                "exit_code": 1,
            }));
            eprintln!("memo: {refusal} (--json never asks)");
            return Err(Failure::Found(String::new()));
        }
        eprintln!(
            "would remove {} ({}) of {}: {described}",
            entries(n),
            size(bytes),
            dir.display()
        );
        if !ask {
            return Err(Failure::Found(refusal.into()));
        }
        eprint!("remove them? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::Found("nothing removed".into()));
        }
    }
    let spin = progress::spinner("removing");
    let removed = if whole {
        store.clear().map_err(|e| failed(dir, &e))?;
        (n, bytes)
    } else {
        let r = store.remove_selected(&sel).map_err(|e| failed(dir, &e))?;
        (r.entries, r.bytes)
    };
    spin.finish_and_clear();
    report(json, removed.0, removed.1, &described);
    Ok(())
}

fn describe(a: &ClearArgs) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &a.function {
        parts.push(format!("function {f}"));
    }
    if a.stale {
        parts.push("stale (code that no longer runs)".to_owned());
    }
    if let Some(d) = a.older_than {
        parts.push(format!("unused for {}", humantime::format_duration(d)));
    }
    if parts.is_empty() {
        "every entry".to_owned()
    } else {
        parts.join(", ")
    }
}

fn report(json: bool, removed: u64, bytes: u64, what: &str) {
    if json {
        print_json(&json!({ "removed": removed, "bytes": bytes }));
    } else {
        out!("removed {} ({}): {what}", entries(removed), size(bytes));
    }
}
