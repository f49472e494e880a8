//! Tests of `memoize/function.rs`: keys carry their function's tag, damaged and
//! undecodable entries are recomputed, problems reported once per cause.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::cell::Cell;

use super::Function;
use crate::key::call::TAG_AT;
use crate::memoize::outcome::{OkOnly, Whole};
use crate::{Key, Store};

fn key(f: &Function, self_ty: &'static str, arg: u32) -> Key {
    let mut k = f.key(self_ty, || [0; 32]);
    k.arg(&arg);
    k.finish()
}

#[test]
fn keys_carry_their_function_tag() {
    let f = Function::new("m", "f", "fn f ( x : u32 ) { }", "");
    let edited = Function::new("m", "f", "fn f ( x : u32 ) { x }", "");
    let bumped = Function::new("m", "f", "fn f ( x : u32 ) { }", "2");
    let other = Function::new("m", "g", "fn f ( x : u32 ) { }", "");
    let (a, b) = (key(&f, "", 1), key(&f, "", 2));
    assert_ne!(a, b);
    assert_eq!(a, key(&f, "", 1), "cached bases give the same key");
    assert_eq!(a.as_bytes()[TAG_AT..], b.as_bytes()[TAG_AT..]);
    for k in [key(&edited, "", 1), key(&bumped, "", 1)] {
        assert_ne!(k, a);
        assert_eq!(
            k.as_bytes()[TAG_AT..],
            a.as_bytes()[TAG_AT..],
            "same function, new code"
        );
    }
    for k in [key(&other, "", 1), key(&f, "m::Model", 1)] {
        assert_ne!(k.as_bytes()[TAG_AT..], a.as_bytes()[TAG_AT..]);
    }
    assert_ne!(a, Key::of(&1_u32));
}

#[test]
fn an_undecodable_entry_is_recomputed_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let f = Function::new("m", "f", "", "");
    let k = key(&f, "", 1);
    // What an older build of the function stored, of another type
    // (bytes that are not UTF-8, so not a `String`).
    store.put(&k, &vec![0xff_u8, 0xfe, 0xfd]).unwrap();
    let runs = Cell::new(0);
    let compute = || {
        runs.set(runs.get() + 1);
        Whole(String::from("fresh"))
    };
    assert_eq!(f.call(&store, &k, compute).0, "fresh");
    assert_eq!(f.call(&store, &k, compute).0, "fresh");
    assert_eq!(runs.get(), 1);
}

/// Counts warnings, and other events (for tests of what memo reports).
pub(crate) struct Count(pub(crate) std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]>);

impl tracing::Subscriber for Count {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let i = usize::from(*e.metadata().level() != tracing::Level::WARN);
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_problem_is_reported_once_per_cause() {
    let counts: std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]> = std::sync::Arc::default();
    let f = Function::new("m", "reported", "", "");
    let k = key(&f, "", 1);
    let io = |p: &str| crate::Error::io(p, std::io::Error::other("disk on fire"));
    tracing::subscriber::with_default(Count(counts.clone()), || {
        for _ in 0..5 {
            f.report(&k, &io("/a"));
        }
        f.report(&k, &io("/b"));
    });
    let [warn, other] = &*counts;
    let load = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (load(warn), load(other)),
        (2, 4),
        "one warning per file, debug after"
    );
}

#[test]
fn errors_are_not_stored_and_disabled_stores_compute() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let f = Function::new("m", "f", "", "");
    let k = key(&f, "", 1);
    let failing = || OkOnly(Err::<u32, &str>("transient"));
    assert!(f.call(&store, &k, failing).0.is_err());
    assert!(!f.is_cached(&store, &k));
    assert_eq!(f.call(&store, &k, || OkOnly(Ok::<u32, &str>(5))).0, Ok(5));
    assert!(f.is_cached(&store, &k));
    assert_eq!(f.stats(&store, "", || [0; 32]).entries, 1);
    let off = Store::disabled();
    assert_eq!(f.call(&off, &k, || Whole(9_u8)).0, 9);
    assert_eq!(f.clear(&off, "").unwrap(), 0);
}
