//! Guards the on-disk format's stability: `Key::of` golden values (keys are
//! part of the format), order independence of hashed containers, and a
//! store of format version 1 checked into `fixtures/store-v1`, which must
//! keep opening and reading exactly — values put raw and encoded, inline and
//! as a blob, replaced and removed entries, and a `#[memoize]` call (whose
//! key pins the call-key derivation and the fingerprint end to end).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use memo_core::{Key, Store, memoize};
use memo_tests::copy_tree;
use serde::Serialize;

#[derive(Serialize)]
struct Params {
    name: &'static str,
    steps: u64,
    tol: f64,
    tags: Vec<String>,
    mode: Mode,
}

#[derive(Serialize)]
enum Mode {
    Fast,
    Exact { order: u8 },
}

fn golden() -> Vec<(&'static str, Key)> {
    vec![
        ("unit", Key::of(&())),
        ("u64 42", Key::of(&42_u64)),
        ("i32 -1", Key::of(&-1_i32)),
        ("f64 pi", Key::of(&std::f64::consts::PI)),
        ("str", Key::of("hello, memo")),
        ("bytes", Key::of(&Key::from_bytes([7; 32]))),
        ("vec f64", Key::of(&vec![0.5_f64, -2.0, 1e300])),
        ("tuple", Key::of(&("fit", 3_u32, Some(true), None::<u8>))),
        (
            "struct",
            Key::of(&Params {
                name: "run",
                steps: 1000,
                tol: 1e-9,
                tags: vec!["a".into(), "b".into()],
                mode: Mode::Exact { order: 4 },
            }),
        ),
        ("unit variant", Key::of(&Mode::Fast)),
        ("map", Key::of(&BTreeMap::from([("x", 1_i64), ("y", 2)]))),
        ("set", Key::of(&HashSet::from([3_u16, 1, 2]))),
    ]
}

/// Checked in when format version 1 was made. A change here changes every
/// stored key: it needs a new `FORMAT_VERSION`, not new golden values.
const GOLDEN: [(&str, &str); 12] = [
    (
        "unit",
        "2c73bf55a5f791ba6fcf242940241fa74923e6b55fe4ccbf8347e5009eb774a0",
    ),
    (
        "u64 42",
        "807f469e2d3e0f738d8e3adc5f6cb14a606fa9d1a291cd13dc746f5d3a08b936",
    ),
    (
        "i32 -1",
        "954174032577afcc891f5fb7a1c12a0995c13843bfb1c62267f228c3378849a8",
    ),
    (
        "f64 pi",
        "361f65828709593994ee095f13a1fd503f9ea285f5c7660797d2af10be3da308",
    ),
    (
        "str",
        "9da2f4779a0d11bfe6ae4c3cdb23abe8ffdf6e33e8c4153dee713cdf8924954a",
    ),
    (
        "bytes",
        "13b9527696d5f4843febba6c9c537e890814b251be651051f172f1c2ae739b0f",
    ),
    (
        "vec f64",
        "54ffa09d2ba69875dcd875246912f1ac381cf0f1a0e2f52d7e1b0e3f9f60c8fc",
    ),
    (
        "tuple",
        "87ce6af270037b77172b1b84ba27de8f55f1b039bdef1914c8a20b84513946a3",
    ),
    (
        "struct",
        "8bea3b477b51793afa3bfdf6d9da6109cc5ff5d3de2ac343a38901ef7ab81f8c",
    ),
    (
        "unit variant",
        "a853de2cccb5b69593820db7fcf4fde7363ef44a5916b4be72c258cf7cb302d4",
    ),
    (
        "map",
        "8f38b44a93ef43a0d133d55308b74f256c20c29d7051a5e614993c75ce0047f9",
    ),
    (
        "set",
        "8de0aabc7a1bc72ff370c1088d6b704ace5e2e1f280bfdb453ffaed1cd9f2e12",
    ),
];

#[test]
fn key_of_golden_values() {
    let got = golden();
    if std::env::var_os("MEMO_PRINT_GOLDEN").is_some() {
        for (name, key) in &got {
            println!("    (\"{name}\", \"{key}\"),");
        }
    }
    for ((name, key), (gname, want)) in got.iter().zip(GOLDEN) {
        assert_eq!(*name, gname);
        assert_eq!(key.to_string(), want, "Key::of changed for {name}");
    }
}

#[test]
fn hash_map_and_set_keys_do_not_depend_on_order() {
    // Built in different insertion orders and with different hasher seeds.
    let a: HashMap<String, Vec<u32>> = (0..200)
        .map(|i| (format!("k{i}"), vec![i, i * 2]))
        .collect();
    let mut b: HashMap<String, Vec<u32>> = HashMap::new();
    for i in (0..200).rev() {
        b.insert(format!("k{i}"), vec![i, i * 2]);
    }
    assert_eq!(Key::of(&a), Key::of(&b));
    let s1: HashSet<(u8, String)> = (0..100).map(|i| (i, i.to_string())).collect();
    let s2: HashSet<(u8, String)> = (0..100).rev().map(|i| (i, i.to_string())).collect();
    assert_eq!(Key::of(&s1), Key::of(&s2));
    assert_eq!(Key::of(&(1, &s1)), Key::of(&(1, &s2)));
    let mut changed = a.clone();
    changed.insert("k0".into(), vec![0, 1]);
    assert_ne!(Key::of(&a), Key::of(&changed));
}

#[test]
fn key_text_round_trip() {
    let k = Key::of("x");
    assert_eq!(k.to_string().len(), 64);
    assert_eq!(k.to_string().parse::<Key>().unwrap(), k);
    assert!("zz".parse::<Key>().is_err());
    assert!(k.to_string().to_uppercase().parse::<Key>().is_err());
    assert_eq!(Key::from_bytes(*k.as_bytes()), k);
}

/// The store the fixture's memoized call uses: the fixture being written,
/// or a copy of it being checked.
static FIXTURE: OnceLock<Store> = OnceLock::new();
static COMPUTED: AtomicU32 = AtomicU32::new(0);

/// Part of the fixture: its key covers this module's path, the function's
/// name and its tokens. The fixture holds its result under a call key of
/// layout 1, which layout 2 does not reuse (the test says so).
#[memoize(store = FIXTURE.get().unwrap())]
fn fixture_call(x: u32, label: &str) -> (u32, String) {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    (x * 3, format!("{label}-{x}"))
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-v1")
}

/// Every entry of the fixture: key, and what reading it must give.
fn fixture_entries() -> Vec<(Key, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..12_u32 {
        let len = [0, 1, 47, 100, 4095, 65_535][i as usize % 6];
        let bytes = (0..len)
            .map(|j| (j as u32 ^ i.wrapping_mul(97)) as u8)
            .collect();
        out.push((Key::of(&("raw", i)), bytes));
    }
    // A blob (64 KiB and more get a file each).
    out.push((
        Key::of("blob"),
        (0..70_000_u32).map(|j| (j % 251) as u8).collect(),
    ));
    out
}

fn fixture_value(i: u32) -> (u32, String, Vec<f64>) {
    (
        i,
        format!("value {i}"),
        vec![f64::from(i) * 0.5; i as usize],
    )
}

#[test]
fn a_store_of_format_v1_opens_and_reads_exactly() {
    if std::env::var_os("MEMO_WRITE_FIXTURE").is_some() {
        // Writes the fixture, once per format version; then check it in.
        let dir = fixture_dir();
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        for (k, v) in fixture_entries() {
            store.put_bytes(&k, &v).unwrap();
        }
        for i in 0..8 {
            store
                .put(&Key::of(&("encoded", i)), &fixture_value(i))
                .unwrap();
        }
        store.put(&Key::of("replaced"), &1_u64).unwrap();
        store.put(&Key::of("replaced"), &2_u64).unwrap();
        store.put(&Key::of("removed"), &3_u64).unwrap();
        assert!(store.remove(&Key::of("removed")).unwrap());
        FIXTURE.set(store).unwrap();
        assert_eq!(fixture_call(7, "seven"), (21, "seven-7".to_owned()));
        return;
    }
    // A copy: reading counts hits in the index, and the fixture stays as
    // it was written.
    let t = memo_tests::tempdir();
    let copy = t.path().join("store");
    copy_tree(&fixture_dir(), &copy);
    let store = Store::open(&copy).unwrap();
    for (k, v) in fixture_entries() {
        assert_eq!(&*store.get_bytes(&k).unwrap().unwrap(), &v[..], "{k}");
    }
    for i in 0..8 {
        let got: (u32, String, Vec<f64>) = store.get(&Key::of(&("encoded", i))).unwrap().unwrap();
        assert_eq!(got, fixture_value(i));
    }
    assert_eq!(store.get::<u64>(&Key::of("replaced")).unwrap(), Some(2));
    assert_eq!(store.get::<u64>(&Key::of("removed")).unwrap(), None);
    assert!(store.verify().unwrap().problems.is_empty());
    // The fixture's memoized call was stored under a call key of layout 1
    // (24 bytes of hash; layout 2 gives 4 of them to the code mark, see
    // docs/format.md): its entry still reads exactly by that key, and the
    // call, whose key is now another, computes once, then hits.
    let v1_key: Key = "ca49d44ee301b259225e57032bb967b8928d94c05c47815575403464cafee627"
        .parse()
        .unwrap();
    assert_eq!(
        store.get::<(u32, String)>(&v1_key).unwrap(),
        Some((21, "seven-7".to_owned()))
    );
    FIXTURE.set(store).unwrap();
    assert_eq!(fixture_call(7, "seven"), (21, "seven-7".to_owned()));
    assert_eq!(fixture_call(7, "seven"), (21, "seven-7".to_owned()));
    assert_eq!(
        COMPUTED.load(Ordering::Relaxed),
        1,
        "a call key of layout 1 is not reused: computed once, then loaded"
    );
    // Lost index: rebuilt from the fixture's segments, every entry kept.
    let again = t.path().join("rebuilt");
    copy_tree(&fixture_dir(), &again);
    std::fs::remove_file(again.join("index")).unwrap();
    let rebuilt = Store::open(&again).unwrap();
    assert_eq!(rebuilt.len(), 13 + 8 + 1 + 1);
    assert_eq!(rebuilt.get::<u64>(&Key::of("removed")).unwrap(), None);
}
