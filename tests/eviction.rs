//! Guards bounded disk use: the store stays within `max_bytes` after every
//! put, each policy keeps what it should, `max_age` expires, and eviction
//! and compaction never show a reader wrong bytes nor lose a live entry,
//! even when the compacting process is killed. Children are this test
//! binary re-run with a role in `MEMO_TEST_ROLE`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use memo_core::{Key, Policy, Store};
use memo_tests::{XorShift, tempdir};

/// Bytes the store's files take (what `du --apparent-size` would say).
fn disk_use(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |entries| {
            entries
                .flatten()
                // A file may vanish between the listing and the look.
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    walk(dir)
}

/// A value that names its key and version, so any wrong bytes show.
fn value(i: u64, version: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(16));
    v.extend_from_slice(&i.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn check(i: u64, bytes: &[u8]) {
    assert!(bytes.len() >= 16, "entry {i}: short value");
    let version = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(
        bytes,
        &value(i, version, bytes.len())[..],
        "entry {i}: wrong bytes"
    );
}

/// Mixed sizes: mostly small, some up to the inline limit, a few blobs.
fn mixed_len(rng: &mut XorShift) -> usize {
    match rng.below(100) {
        0..=79 => 16 + rng.below(4000) as usize,
        80..=94 => 4096 + rng.below(60_000) as usize,
        _ => 65_536 + rng.below(500_000) as usize,
    }
}

fn puts() -> u64 {
    std::env::var("MEMO_EVICT_PUTS").map_or(2000, |v| v.parse().unwrap())
}

#[test]
fn disk_use_stays_within_the_limit_after_every_put() {
    const MAX: u64 = 4 << 20;
    for policy in [Policy::Lru, Policy::Lfu, Policy::CostAware] {
        let dir = tempdir();
        let store = Store::builder(dir.path())
            .max_bytes(MAX)
            .policy(policy)
            .open()
            .unwrap();
        let mut rng = XorShift::new(7);
        let mut worst = 0;
        for n in 0..puts() {
            // Keys repeat (a fifth of puts replace), reads make hits.
            let i = rng.below(puts() * 4 / 5);
            store
                .put_with_cost(
                    &Key::of(&i),
                    &value(i, n, mixed_len(&mut rng)),
                    Duration::from_micros(rng.below(1_000_000)),
                )
                .unwrap();
            let used = disk_use(dir.path());
            worst = worst.max(used);
            assert!(
                used * 4 <= MAX * 5,
                "{policy:?}: {used} bytes on disk after put {n}, limit {MAX}"
            );
            let probe = rng.below(puts());
            if let Some(b) = store.get::<Vec<u8>>(&Key::of(&probe)).unwrap() {
                check(probe, &b);
            }
        }
        let s = store.stats();
        assert!(s.evictions > 0, "{policy:?}: nothing was evicted");
        assert!(s.bytes_reclaimed > 0, "{policy:?}: nothing was reclaimed");
        assert!(store.verify().unwrap().is_clean(), "{policy:?}");
        eprintln!(
            "{policy:?}: worst {:.2}x of the limit, {} evictions, {} entries left",
            worst as f64 / MAX as f64,
            s.evictions,
            s.entries
        );
    }
}

#[test]
fn an_entry_larger_than_the_budget_is_refused() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .max_bytes(1 << 20)
        .open()
        .unwrap();
    store.put_bytes(&Key::of(&1), b"small").unwrap();
    let err = store
        .put_bytes(&Key::of(&2), &vec![0; 2 << 20])
        .unwrap_err();
    assert!(matches!(err, memo_core::Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains(&Key::of(&2).to_string()), "{err}");
    assert_eq!(store.len(), 1, "nothing else was evicted for it");
}

#[test]
fn lru_keeps_an_entry_read_between_puts() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .max_entries(100)
        .policy(Policy::Lru)
        .open()
        .unwrap();
    let (kept, dropped) = (Key::of("kept"), Key::of("dropped"));
    store.put_bytes(&kept, b"kept").unwrap();
    store.put_bytes(&dropped, b"dropped").unwrap();
    for i in 0..500_u32 {
        store.put_bytes(&Key::of(&i), b"filler").unwrap();
        assert!(store.get_bytes(&kept).unwrap().is_some(), "evicted at {i}");
        assert!(store.len() <= 100);
    }
    assert!(!store.contains(&dropped));
    assert!(store.stats().evictions >= 400);
}

#[test]
fn lfu_keeps_frequently_read_entries() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .max_entries(100)
        .policy(Policy::Lfu)
        .open()
        .unwrap();
    let hot: Vec<Key> = (0..40_u32).map(|i| Key::of(&("hot", i))).collect();
    for k in &hot {
        store.put_bytes(k, b"hot").unwrap();
    }
    for _ in 0..20 {
        for k in &hot {
            assert!(store.get_bytes(k).unwrap().is_some());
        }
    }
    for i in 0..600_u32 {
        let k = Key::of(&("cold", i));
        store.put_bytes(&k, b"cold").unwrap();
        store.get_bytes(&k).unwrap();
        // The hot set stays in use, at a lower rate.
        if i % 10 == 0 {
            store
                .get_bytes(&hot[(i / 10) as usize % hot.len()])
                .unwrap();
        }
    }
    let kept = hot.iter().filter(|k| store.contains(k)).count();
    assert!(kept >= 38, "only {kept} of 40 hot entries kept");
    // LRU, for contrast, keeps the most recent cold entries instead.
    let lru_dir = tempdir();
    let lru = Store::builder(lru_dir.path())
        .max_entries(100)
        .policy(Policy::Lru)
        .open()
        .unwrap();
    for k in &hot {
        lru.put_bytes(k, b"hot").unwrap();
        lru.get_bytes(k).unwrap();
    }
    for i in 0..600_u32 {
        lru.put_bytes(&Key::of(&("cold", i)), b"cold").unwrap();
    }
    assert!(hot.iter().filter(|k| lru.contains(k)).count() < 5);
}

#[test]
fn lfu_lets_past_favourites_fade() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .max_entries(100)
        .policy(Policy::Lfu)
        .open()
        .unwrap();
    let old: Vec<Key> = (0..40_u32).map(|i| Key::of(&("old", i))).collect();
    for k in &old {
        store.put_bytes(k, b"x").unwrap();
    }
    // Yesterday's favourites: read 30 times each, then never again.
    for _ in 0..30 {
        for k in &old {
            store.get_bytes(k).unwrap();
        }
    }
    // Today: entries used once each. Early on the favourites' counts keep
    // them; as the counts halve, they go.
    let mut kept_early = 0;
    for i in 0..8000_u32 {
        let k = Key::of(&("new", i));
        store.put_bytes(&k, b"x").unwrap();
        store.get_bytes(&k).unwrap();
        if i == 300 {
            kept_early = old.iter().filter(|k| store.contains(k)).count();
        }
    }
    let kept_late = old.iter().filter(|k| store.contains(k)).count();
    assert_eq!(
        kept_early, 40,
        "favourites kept while their counts are high"
    );
    assert_eq!(
        kept_late, 0,
        "{kept_late} of 40 past favourites never faded"
    );
}

#[test]
fn max_age_expires_entries_not_used_since() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .max_age(Duration::from_secs(2))
        .open()
        .unwrap();
    let (old, used, fresh) = (Key::of("old"), Key::of("used"), Key::of("fresh"));
    store.put_bytes(&old, b"old").unwrap();
    store.put_bytes(&used, b"used").unwrap();
    std::thread::sleep(Duration::from_millis(2600));
    assert!(store.get_bytes(&used).unwrap().is_some());
    store.put_bytes(&fresh, b"fresh").unwrap();
    store.trim().unwrap();
    assert!(!store.contains(&old), "not used for 2.6 s: expired");
    assert!(store.contains(&used), "read just now");
    assert!(store.contains(&fresh), "written just now");
    std::thread::sleep(Duration::from_millis(3100));
    store.trim().unwrap();
    assert!(store.is_empty(), "nothing used for 3 s");
    assert_eq!(store.stats().evictions, 3);
}

fn child(role: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("MEMO_TEST_ROLE", role)
        .env("MEMO_TEST_DIR", dir)
        .stdout(std::process::Stdio::null());
    c
}

const KEYS: u64 = 400;

/// Not a test of its own: the body of the child processes.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("MEMO_TEST_ROLE") else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var("MEMO_TEST_DIR").unwrap());
    match role.as_str() {
        "reader" => {
            let store = Store::open(&dir).unwrap();
            let mut hits = 0_u64;
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !dir.join("STOP").exists() && std::time::Instant::now() < deadline {
                for i in 0..KEYS * 4 {
                    if let Some(b) = store.get_bytes(&Key::of(&i)).unwrap() {
                        check(i, &b);
                        hits += 1;
                    }
                }
            }
            assert!(hits > 0, "the reader never saw an entry");
        }
        "bounded-writer" => {
            // One of several processes putting into one bounded store.
            let store = Store::builder(&dir)
                .max_bytes(BOUND)
                .policy(Policy::CostAware)
                .open()
                .unwrap();
            let mut rng = XorShift::new(std::process::id().into());
            for n in 0..puts() {
                let i = rng.below(KEYS * 4);
                store
                    .put_bytes(&Key::of(&i), &value(i, n, mixed_len(&mut rng) / 2))
                    .unwrap();
                let probe = rng.below(KEYS * 4);
                if let Some(b) = store.get_bytes(&Key::of(&probe)).unwrap() {
                    check(probe, &b);
                }
            }
        }
        "compactor" => {
            // Replaces a fixed key set forever, compacting as it goes.
            let store = Store::open(&dir).unwrap();
            let mut rng = XorShift::new(std::process::id().into());
            for n in 1.. {
                let i = rng.below(KEYS);
                store
                    .put_bytes(&Key::of(&i), &value(i, n, 16 + rng.below(3000) as usize))
                    .unwrap();
                if n % 200 == 0 {
                    store.trim().unwrap();
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn eviction_and_compaction_never_show_readers_wrong_bytes() {
    let dir = tempdir();
    let mut readers: Vec<_> = (0..2)
        .map(|_| child("reader", dir.path()).spawn().unwrap())
        .collect();
    let store = Store::builder(dir.path())
        .max_bytes(2 << 20)
        .open()
        .unwrap();
    let mut rng = XorShift::new(11);
    for n in 0..puts() * 2 {
        let i = rng.below(KEYS * 4);
        store
            .put_bytes(&Key::of(&i), &value(i, n, mixed_len(&mut rng) / 4))
            .unwrap();
    }
    std::fs::write(dir.path().join("STOP"), b"").unwrap();
    for r in &mut readers {
        assert!(r.wait().unwrap().success(), "a reader saw wrong bytes");
    }
    let s = store.stats();
    assert!(s.evictions > 0 && s.bytes_reclaimed > 0, "{s:?}");
    assert!(store.verify().unwrap().is_clean());
}

const BOUND: u64 = 3 << 20;

#[test]
fn writers_in_several_processes_keep_one_bound() {
    let dir = tempdir();
    let mut writers: Vec<_> = (0..3)
        .map(|_| child("bounded-writer", dir.path()).spawn().unwrap())
        .collect();
    let mut reader = child("reader", dir.path()).spawn().unwrap();
    let mut worst = 0;
    while writers.iter_mut().any(|w| w.try_wait().unwrap().is_none()) {
        // Sampled from outside at any moment, not only after puts: so
        // mid-compaction too (both copies of a segment's live records),
        // without the values other writers are still writing in `tmp/`.
        let in_flight = disk_use(&dir.path().join("tmp"));
        worst = worst.max(disk_use(dir.path()).saturating_sub(in_flight));
        std::thread::sleep(Duration::from_millis(2));
    }
    for w in &mut writers {
        assert!(w.wait().unwrap().success(), "a writer failed");
    }
    std::fs::write(dir.path().join("STOP"), b"").unwrap();
    assert!(
        reader.wait().unwrap().success(),
        "the reader saw wrong bytes"
    );
    let store = Store::open(dir.path()).unwrap();
    assert!(store.stats().evictions > 0);
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        worst * 4 <= BOUND * 5,
        "{worst} bytes on disk while 3 writers ran, limit {BOUND}"
    );
    eprintln!(
        "3 writers: worst {:.2}x of the limit",
        worst as f64 / BOUND as f64
    );
}

#[test]
fn policy_none_never_evicts() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .max_entries(10)
        .policy(Policy::None)
        .open()
        .unwrap();
    for i in 0..50_u32 {
        store.put_bytes(&Key::of(&i), b"kept").unwrap();
    }
    store.trim().unwrap();
    assert_eq!(store.len(), 50);
    assert_eq!(store.stats().evictions, 0);
}

#[test]
fn compaction_killed_at_random_moments_loses_nothing() {
    let rounds: u64 = std::env::var("MEMO_COMPACT_KILLS").map_or(30, |v| v.parse().unwrap());
    let dir = tempdir();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..KEYS {
            store.put_bytes(&Key::of(&i), &value(i, 0, 100)).unwrap();
        }
    }
    let mut rng = XorShift::new(5);
    for round in 0..rounds {
        let mut c = child("compactor", dir.path()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.below(200)));
        c.kill().unwrap();
        c.wait().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..KEYS {
            let b = store
                .get_bytes(&Key::of(&i))
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: entry {i} lost"));
            check(i, &b);
        }
        // The next write repairs what the kill left half done.
        store.put_bytes(&Key::of(&0), &value(0, 1, 100)).unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
    }
    let s = Store::open(dir.path()).unwrap().stats();
    assert!(s.bytes_reclaimed > 0, "no compaction ran: {s:?}");
}

#[derive(Debug, Clone)]
enum Op {
    Put(u64, usize),
    Get(u64),
    Remove(u64),
    Trim,
    Reopen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0..60_u64, prop_oneof![16..2_000_usize, 2_000..40_000_usize, 65_536..120_000_usize]).prop_map(|(k, n)| Op::Put(k, n)),
        4 => (0..60_u64).prop_map(Op::Get),
        1 => (0..60_u64).prop_map(Op::Remove),
        1 => Just(Op::Trim),
        1 => Just(Op::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("MEMO_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Against a map of the last value put per key: a bounded store returns
    /// that value or nothing (it may have evicted it), never an older one,
    /// never one removed; a put's own entry is there after it; the disk
    /// bound holds after every put.
    #[test]
    fn a_bounded_store_returns_the_last_value_or_nothing(
        ops in proptest::collection::vec(op(), 1..150),
        policy in proptest::prop_oneof![
            proptest::strategy::Just(Policy::Lru),
            proptest::strategy::Just(Policy::Lfu),
            proptest::strategy::Just(Policy::CostAware),
        ],
        max in proptest::prop_oneof![proptest::strategy::Just(300_000_u64), proptest::strategy::Just(1_000_000)],
    ) {
        let dir = tempdir();
        let open = || Store::builder(dir.path()).max_bytes(max).policy(policy).open().unwrap();
        let mut store = open();
        let mut model: std::collections::HashMap<u64, Option<Vec<u8>>> = std::collections::HashMap::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(k, len) => {
                    let v = value(k, n as u64, len);
                    store.put_with_cost(&Key::of(&k), &v, Duration::from_micros(len as u64)).unwrap();
                    let stored = store.get::<Vec<u8>>(&Key::of(&k)).unwrap();
                    proptest::prop_assert_eq!(stored.as_deref(), Some(&v[..]));
                    model.insert(k, Some(v));
                    let used = disk_use(dir.path());
                    proptest::prop_assert!(used * 4 <= max * 5, "{} bytes on disk, limit {}", used, max);
                }
                Op::Get(k) => {
                    if let Some(b) = store.get::<Vec<u8>>(&Key::of(&k)).unwrap() {
                        let last = model.get(&k).cloned().flatten();
                        proptest::prop_assert_eq!(Some(&b[..]), last.as_deref(), "key {}", k);
                    }
                }
                Op::Remove(k) => {
                    store.remove(&Key::of(&k)).unwrap();
                    model.insert(k, None);
                }
                Op::Trim => store.trim().unwrap(),
                Op::Reopen => {
                    drop(store);
                    store = open();
                }
            }
        }
        proptest::prop_assert!(store.verify().unwrap().is_clean());
    }
}

/// Issue 15: a cost stored as `u32` microseconds saturated at 71.6 minutes,
/// so hour-long jobs all looked alike to `CostAware` and to "compute time
/// saved". A 2-hour, a 5-hour and a 3-day computation keep their costs and
/// their order: the cheapest is evicted first.
#[test]
fn hours_long_costs_keep_their_order() {
    use std::time::Duration;
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .max_entries(4)
        .policy(Policy::CostAware)
        .open()
        .unwrap();
    let hour = Duration::from_secs(3600);
    let costs = [(0_u32, 5 * hour), (1, 2 * hour), (2, 72 * hour)];
    for (i, cost) in costs {
        store
            .put_with_cost(&Key::of(&i), &vec![i; 100], cost)
            .unwrap();
    }
    let total = store
        .select(&memo_core::Selection::all())
        .unwrap()
        .compute_time;
    assert_eq!(total, 79 * hour, "costs kept exactly");
    // Two more entries cost more than either long one but the 2-hour one:
    // the 2-hour entry is the one evicted.
    store
        .put_with_cost(&Key::of(&3_u32), &vec![3_u32; 100], 100 * hour)
        .unwrap();
    store
        .put_with_cost(&Key::of(&4_u32), &vec![4_u32; 100], 100 * hour)
        .unwrap();
    assert!(!store.contains(&Key::of(&1_u32)), "the cheapest went first");
    assert!(store.contains(&Key::of(&2_u32)), "the 3-day one stayed");
}

static COUNTED: std::sync::LazyLock<Store> = std::sync::LazyLock::new(|| {
    Store::builder(tempdir().keep())
        .max_entries(50)
        .policy(Policy::Lru)
        .open()
        .unwrap()
});

#[memo_core::memoize(store = COUNTED, helpers)]
fn counted(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x * 3
}

/// Issue 30: hits and misses count the same span. A result hit twice,
/// then evicted and computed again, still counts its two hits (they used
/// to vanish with the entry, while its misses stayed), and the compute
/// time they saved. A whole-store clear starts both anew.
#[test]
fn per_function_counts_survive_eviction() {
    assert_eq!(counted(7), 21);
    assert_eq!(counted(7), 21);
    assert_eq!(counted(7), 21);
    let s = counted_stats();
    assert_eq!((s.hits, s.misses), (2, 1));
    // Push it out: 50 entries at most, least recently used first.
    for x in 100..200 {
        counted(x);
    }
    assert!(!counted_is_cached(7), "evicted");
    assert_eq!(counted(7), 21);
    let s = counted_stats();
    assert_eq!((s.hits, s.misses), (2, 102), "the hits outlive the entry");
    assert!(s.compute_saved >= Duration::from_millis(4), "{s:?}");
    COUNTED.clear().unwrap();
    let s = counted_stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 0, 0), "{s:?}");
}
