//! Sweeps: one memoized function over many inputs (`<name>_map`, from
//! `#[memoize(map)]`). Results come back in input order. Stored results are
//! loaded first, without waiting on any computation; the misses are then
//! computed on a thread pool (rayon's current one, with the `sweep`
//! feature), each once across threads, processes and machines. An input
//! another process (or machine) is computing is left to it and asked again
//! at the end, so two processes sweeping one grid split it between them.
//!
//! A progress bar (stored / computed / remaining, rate, ETA) is drawn on
//! stderr when it is a terminal, unless `MEMO_PROGRESS=0`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::Flown;

/// One input's call: its key's answer, later.
pub(crate) enum Slot<O, F> {
    Done(O),
    Pending(F),
}

/// Progress of a sweep, shown or not.
pub(crate) struct Progress {
    stored: AtomicU64,
    computed: AtomicU64,
    #[cfg(feature = "sweep")]
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new(total: usize, name: &str) -> Progress {
        Progress {
            stored: AtomicU64::new(0),
            computed: AtomicU64::new(0),
            #[cfg(feature = "sweep")]
            bar: bar(total, name),
        }
    }

    /// One more input answered; `computed` if this process ran its body.
    pub(crate) fn done(&self, computed: bool) {
        let counter = if computed {
            &self.computed
        } else {
            &self.stored
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "sweep")]
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} stored, {} computed",
                self.stored.load(Ordering::Relaxed),
                self.computed.load(Ordering::Relaxed)
            ));
            bar.inc(1);
        }
    }

    fn finish(&self) {
        tracing::debug!(
            stored = self.stored.load(Ordering::Relaxed),
            computed = self.computed.load(Ordering::Relaxed),
            "memo: sweep done"
        );
        #[cfg(feature = "sweep")]
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(feature = "sweep")]
fn bar(total: usize, name: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    let off =
        std::env::var("MEMO_PROGRESS").is_ok_and(|v| matches!(v.as_str(), "0" | "off" | "false"));
    if off || !std::io::stderr().is_terminal() || total < 2 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} ({msg}) {per_sec}, eta {eta}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_prefix(name.to_owned());
    Some(bar)
}

/// Runs the sweep: `lookup(i)` answers input `i` from the store if it can;
/// then `flight(i, wait, f)` for the others, first without waiting on
/// other processes, then waiting for what they were computing.
pub(crate) fn run<O, F>(
    slots: Vec<Slot<O, F>>,
    progress: &Progress,
    flight: &(dyn Fn(usize, bool, F) -> Flown<O, F> + Sync),
) -> Vec<O>
where
    O: Send,
    F: FnOnce() -> O + Send,
{
    let n = slots.len();
    let mut out: Vec<Option<O>> = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for (i, s) in slots.into_iter().enumerate() {
        match s {
            Slot::Done(o) => out.push(Some(o)),
            Slot::Pending(f) => {
                out.push(None);
                pending.push((i, f));
            }
        }
    }
    let out = Mutex::new(out);
    let panics = Mutex::new(Vec::new());
    let deferred = Mutex::new(Vec::new());
    let answer = |i: usize, wait: bool, f: F| {
        match catch_unwind(AssertUnwindSafe(|| flight(i, wait, f))) {
            Ok(Flown::Done(o, _)) => {
                out.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(o);
            }
            // Asked again at the end, waiting then.
            Ok(Flown::Busy(f)) if !wait => deferred
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((i, f)),
            // A waiting flight is not busy; should one be, run it here.
            Ok(Flown::Busy(f)) => match catch_unwind(AssertUnwindSafe(f)) {
                Ok(o) => out.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(o),
                Err(panic) => panics
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((i, panic)),
            },
            Err(panic) => panics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((i, panic)),
        }
    };
    for_each(pending, &|(i, f)| answer(i, false, f));
    let later = std::mem::take(&mut *deferred.lock().unwrap_or_else(PoisonError::into_inner));
    for_each(later, &|(i, f)| answer(i, true, f));
    progress.finish();
    let mut panics = panics.into_inner().unwrap_or_else(PoisonError::into_inner);
    if !panics.is_empty() {
        panics.sort_by_key(|(i, _)| *i);
        let inputs: Vec<usize> = panics.iter().map(|(i, _)| *i).collect();
        tracing::error!(
            ?inputs,
            "memo: {} input(s) of a sweep panicked; every other input was computed and stored; the first panic goes on",
            inputs.len()
        );
        let (_, first) = panics.swap_remove(0);
        resume_unwind(first);
    }
    out.into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        // Every input has an answer here: a panic was raised above, and a
        // waiting flight is never busy.
        .flatten()
        .collect()
}

/// Runs `f` on every item, in parallel.
#[cfg(feature = "sweep")]
fn for_each<T: Send>(items: Vec<T>, f: &(dyn Fn(T) + Sync)) {
    use rayon::prelude::*;
    items.into_par_iter().with_max_len(1).for_each(f);
}

/// Runs `f` on every item, on as many threads as the machine has cores.
#[cfg(not(feature = "sweep"))]
fn for_each<T: Send>(items: Vec<T>, f: &(dyn Fn(T) + Sync)) {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let queue = Mutex::new(items.into_iter());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                    match next {
                        Some(item) => f(item),
                        None => break,
                    }
                }
            });
        }
    });
}
