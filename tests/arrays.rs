//! Guards `Array<T>` and `Lazy<T>`: a stored array is loaded as a view of
//! the mapped file (proven by address, at every size boundary and nested in
//! other types), its key is its bytes whatever the thread count, and a
//! pipeline step keyed by a `Lazy` upstream never reads the upstream on a
//! hit, and recomputes it when it was evicted.

#![allow(
    clippy::unwrap_used,
    clippy::needless_pass_by_value,
    clippy::cast_precision_loss,
    clippy::float_cmp,
    reason = "tests: fail loudly; memoized arguments are taken as users write them; sums of small integers are exact"
)]

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use memo_core::{Array, Key, Lazy, Pod, Store, memoize};
use serde::{Deserialize, Serialize};

fn fresh() -> Store {
    Store::open(memo_tests::tempdir().keep()).unwrap()
}

/// Whether `inner` lies wholly inside `outer`'s memory.
fn within<T>(inner: &[T], outer: &[u8]) -> bool {
    let (start, len) = (inner.as_ptr() as usize, size_of_val(inner));
    let (o, olen) = (outer.as_ptr() as usize, outer.len());
    start >= o && start + len <= o + olen
}

/// Stores `value` under a key, loads it back, and checks that every array
/// in it (found by `arrays`) is a view of the stored bytes, aligned.
fn assert_viewed<V, T>(store: &Store, name: &str, value: &V, arrays: impl Fn(&V) -> Vec<&[T]>)
where
    V: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    T: Pod,
{
    let key = Key::of(name);
    store.put(&key, value).unwrap();
    let back: V = store.get(&key).unwrap().unwrap();
    assert_eq!(&back, value, "{name}");
    let stored = store.get_bytes(&key).unwrap().unwrap();
    for a in arrays(&back) {
        if a.is_empty() {
            continue;
        }
        assert!(within(a, &stored), "{name}: not a view of the stored bytes");
        assert!(
            (a.as_ptr() as usize).is_multiple_of(align_of::<T>()),
            "{name}: misaligned"
        );
    }
}

#[test]
fn loaded_arrays_are_views_of_the_mapping_at_every_size() {
    let store = fresh();
    // Around the segment's alignment threshold (64 KiB), the inline limit
    // (2 MiB, above which a value is a blob file) and tiny sizes, each
    // behind prefixes that shift the array by every offset mod 8.
    let sizes = [
        1_usize,
        7,
        8,
        100,
        8191,
        8192,
        8193,
        262_143,
        262_144,
        262_145,
        524_287,
        524_288,
        1 << 20,
    ];
    for n in sizes {
        for prefix in [0_usize, 1, 3, 5, 8] {
            let a: Array<u32> = (0..n as u32).collect();
            let value = ("p".repeat(prefix), a);
            assert_viewed(&store, &format!("u32 {n} {prefix}"), &value, |v| {
                vec![&v.1[..]]
            });
        }
        let f: Array<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        assert_viewed(&store, &format!("f64 {n}"), &(7_u8, f), |v| vec![&v.1[..]]);
        let b: Array<u8> = (0..n).map(|i| i as u8).collect();
        assert_viewed(&store, &format!("u8 {n}"), &b, |v| vec![&v[..]]);
    }
    // Elements aligned to 16: in place where the format aligns payloads to
    // 64 (64 KiB and more), equal either way.
    let big: Array<u128> = (0..8192_u128).collect();
    assert_viewed(&store, "u128 big", &(1_u8, big), |v| vec![&v.1[..]]);
    let small: Array<u128> = (0..10_u128).collect();
    store.put(&Key::of("u128 small"), &small).unwrap();
    assert_eq!(
        store
            .get::<Array<u128>>(&Key::of("u128 small"))
            .unwrap()
            .unwrap(),
        small
    );
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Frame {
    name: String,
    x: Array<f64>,
    y: Array<f64>,
    ids: Array<u32>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
enum Column {
    Empty,
    Dense(Array<f32>),
    Pair { left: Array<i64>, right: Array<i64> },
}

#[test]
fn arrays_nested_in_structs_enums_and_results_are_views() {
    let store = fresh();
    let frame = Frame {
        name: "f".into(),
        x: (0..100_000).map(f64::from).collect(),
        y: (0..3).map(f64::from).collect(),
        ids: (0..17).collect(),
    };
    assert_viewed(&store, "frame", &frame, frame_views);
    let cols = vec![
        Column::Dense((0..1000).map(|i| i as f32).collect()),
        Column::Empty,
        Column::Pair {
            left: (0..5).collect(),
            right: (-9..0).collect(),
        },
    ];
    assert_viewed(&store, "enum", &cols, |v| {
        let mut out: Vec<&[u8]> = Vec::new();
        for c in v {
            match c {
                Column::Empty => {}
                Column::Dense(a) => out.push(bytemuck_bytes(a)),
                Column::Pair { left, right } => {
                    out.push(bytemuck_bytes(left));
                    out.push(bytemuck_bytes(right));
                }
            }
        }
        out
    });
    let ok: Result<Array<u64>, String> = Ok((0..1000).collect());
    assert_viewed(&store, "result", &ok, |v| {
        vec![v.as_ref().unwrap().as_bytes()]
    });
}

fn frame_views(f: &Frame) -> Vec<&[u8]> {
    vec![f.x.as_bytes(), f.y.as_bytes(), f.ids.as_bytes()]
}

fn bytemuck_bytes<T: Pod>(a: &Array<T>) -> &[u8] {
    a.as_bytes()
}

static SIGNALS: LazyLock<Store> = LazyLock::new(fresh);
static SIGNAL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = SIGNALS)]
fn signal(n: usize) -> Array<f64> {
    SIGNAL_RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| (i as f64).sin()).collect()
}

#[memoize(store = SIGNALS)]
fn split(n: u32) -> Result<Frame, String> {
    if n == 0 {
        return Err("empty".into());
    }
    Ok(Frame {
        name: format!("{n}"),
        x: (0..n).map(f64::from).collect(),
        y: (0..n).map(|i| f64::from(i) * 2.0).collect(),
        ids: (0..n).collect(),
    })
}

#[test]
fn memoized_hits_return_mapped_arrays() {
    // 8 MiB: a blob file; 1000 elements: a segment record.
    for n in [1 << 20, 1000] {
        let before = SIGNAL_RUNS.load(Ordering::SeqCst);
        let first = signal(n);
        assert!(!first.is_mapped(), "computed: the body's own memory");
        let again = signal(n);
        assert!(again.is_mapped(), "a hit is a view of the store");
        assert_eq!(first, again);
        assert_eq!(SIGNAL_RUNS.load(Ordering::SeqCst) - before, 1);
    }
    let first = split(50_000).unwrap();
    let again = split(50_000).unwrap();
    assert_eq!(first, again);
    assert!(again.x.is_mapped() && again.y.is_mapped() && again.ids.is_mapped());
    assert_eq!(split(0), Err("empty".to_owned()));
}

#[test]
fn arrays_and_lazies_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Array<f64>>();
    send_sync::<Lazy<Array<f64>>>();
    send_sync::<Lazy<Frame>>();
    // A view outlives the store that loaded it, as `Bytes` does.
    let store = fresh();
    let key = Key::of("outlives");
    let a: Array<u64> = (0..10_000).collect();
    store.put(&key, &a).unwrap();
    let view: Array<u64> = store.get(&key).unwrap().unwrap();
    drop(store);
    let sum = std::thread::spawn(move || view.iter().sum::<u64>())
        .join()
        .unwrap();
    assert_eq!(sum, (0..10_000).sum::<u64>());
}

#[test]
fn array_keys_are_their_bytes_whatever_the_thread_count() {
    // Golden: keys are part of the on-disk format.
    let small: Array<f64> = vec![1.0, 2.0, 3.0].into();
    assert_eq!(
        Key::of(&small).to_string(),
        "eb7881388681715f5e03be1286189a3fb84a30743493fceaf395252b37cef13b"
    );
    // The same elements by another type are another key.
    let bytes: Array<u8> = small.as_bytes().to_vec().into();
    assert_ne!(Key::of(&bytes), Key::of(&small));
    // 64 MiB hashes on rayon's threads: one thread or two, the same key,
    // equal to a key made of the same bytes one small piece at a time.
    let big: Array<f64> = (0..8 << 20).map(|i| f64::from(i) * 0.25).collect();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let k1 = one.install(|| Key::of(&big));
    let k2 = two.install(|| Key::of(&big));
    assert_eq!(k1, k2);
    // What it hashes: the element type, an empty padding and the raw
    // little-endian bytes.
    assert_eq!(Key::of(&AsBytes(big.as_bytes())), k1);
    let mut changed = big.to_vec();
    changed[5 << 20] = -1.0;
    assert_ne!(Key::of(&Array::from(changed)), k1);
}

/// An `Array<f64>`'s canonical form spelled out: a tuple struct named
/// after the element type, of two byte strings, the (empty) padding and
/// the elements' bytes.
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTupleStruct;
        struct Raw<'a>(&'a [u8]);
        impl Serialize for Raw<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        let mut t = s.serialize_tuple_struct("f64", 2)?;
        t.serialize_field(&Raw(&[]))?;
        t.serialize_field(&Raw(self.0))?;
        t.end()
    }
}

static PIPE: LazyLock<Store> = LazyLock::new(fresh);
static LOADS: AtomicUsize = AtomicUsize::new(0);
static FITS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = PIPE, helpers)]
fn load(rows: u32) -> Array<f64> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    (0..rows).map(f64::from).collect()
}

#[memoize(store = PIPE, helpers)]
fn fit(data: Lazy<Array<f64>>, scale: u32) -> f64 {
    FITS.fetch_add(1, Ordering::SeqCst);
    data.iter().sum::<f64>() * f64::from(scale)
}

#[test]
fn a_lazy_upstream_is_never_read_when_the_downstream_hits() {
    let loads = || LOADS.load(Ordering::SeqCst);
    let fits = || FITS.load(Ordering::SeqCst);
    let (l0, f0) = (loads(), fits());
    // Making a Lazy computes its key, nothing else.
    let hits = PIPE.stats().hits;
    let misses = PIPE.stats().misses;
    let data = load_lazy(1000);
    assert!(!data.is_loaded());
    assert_eq!((PIPE.stats().hits, PIPE.stats().misses), (hits, misses));
    assert_eq!(loads(), l0);
    // Its key is the call's.
    assert!(!PIPE.contains(&data.key()));
    assert_eq!(fit(data.clone(), 2), 999_000.0);
    assert!(data.is_loaded());
    assert_eq!((loads(), fits()), (l0 + 1, f0 + 1));
    assert!(PIPE.contains(&data.key()));
    // A downstream hit: one lookup (the downstream's), the upstream never
    // computed, looked up or read.
    let before = PIPE.stats();
    let again = load_lazy(1000);
    assert_eq!(fit(again.clone(), 2), 999_000.0);
    assert!(!again.is_loaded());
    let after = PIPE.stats();
    assert_eq!(
        (after.hits - before.hits, after.misses - before.misses),
        (1, 0)
    );
    assert_eq!((loads(), fits()), (l0 + 1, f0 + 1));
    // The downstream's key is made of the upstream's key: the same data
    // by value is another call.
    assert_eq!(fit_lazy(load_lazy(1000), 2).key(), fit_lazy(again, 2).key());
    assert_ne!(
        fit_lazy(load_lazy(1001), 2).key(),
        fit_lazy(load_lazy(1000), 2).key()
    );
}

static EVICT: LazyLock<Store> = LazyLock::new(fresh);
static SOURCE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = EVICT, helpers)]
fn source(rows: u32) -> Array<f64> {
    SOURCE_RUNS.fetch_add(1, Ordering::SeqCst);
    (0..rows).map(f64::from).collect()
}

#[memoize(store = EVICT)]
fn scaled(data: Lazy<Array<f64>>, scale: u32) -> f64 {
    data.iter().sum::<f64>() * f64::from(scale)
}

#[test]
fn an_evicted_upstream_is_recomputed_on_deref() {
    let runs = || SOURCE_RUNS.load(Ordering::SeqCst);
    let data = source_lazy(77);
    assert_eq!(data.len(), 77);
    assert_eq!(runs(), 1);
    assert!(!data.is_mapped(), "computed: the body's own memory");
    // The upstream's results are removed (as eviction would); a new
    // downstream call still gets them, computed once more.
    assert_eq!(source_clear().unwrap(), 1);
    let lazy = source_lazy(77);
    assert_eq!(
        scaled(lazy.clone(), 3),
        f64::from((0..77).sum::<u32>()) * 3.0
    );
    assert_eq!(runs(), 2);
    // And stored again: the next deref loads a view.
    let reloaded = source_lazy(77);
    assert!(reloaded.is_mapped());
    assert_eq!(runs(), 2);
}
