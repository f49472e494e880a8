//! Guards the on-disk format's stability: `Key::of` golden values (keys are
//! part of the format) and order independence of hashed containers.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::{BTreeMap, HashMap, HashSet};

use memo_core::Key;
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
