use memo_core::memoize;

#[memoize(map)]
fn label(name: &str, n: u32) -> String {
    format!("{name}{n}")
}

#[memoize(map)]
fn generic<T: serde::Serialize + Send + Sync>(x: T, k: u8) -> u8 {
    let _ = x;
    k
}

#[memoize(map, helpers)]
fn fallible(x: u32) -> Result<u32, String> {
    if x == 0 { Err("zero".into()) } else { Ok(x) }
}

fn main() {
    assert_eq!(label_map(vec![("a", 1), ("b", 2)]), vec!["a1", "b2"]);
    assert_eq!(generic_map(vec![(1u32, 2u8)]), vec![2]);
    assert_eq!(fallible_map([(0,), (1,)]), vec![Err("zero".into()), Ok(1)]);
    assert!(fallible_is_cached(1));
}
