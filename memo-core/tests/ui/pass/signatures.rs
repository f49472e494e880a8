//! Every supported shape of signature compiles, and keeps its meaning.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use memo_core::{Store, memoize};
use serde::{Deserialize, Serialize};

static CACHE: LazyLock<Store> = LazyLock::new(|| Store::open(std::env::temp_dir().join("memo-ui-pass")).unwrap());
static SHARED: LazyLock<Arc<Store>> = LazyLock::new(|| Arc::new(CACHE.clone()));

fn store() -> &'static Store {
    &CACHE
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Fit {
    slope: f64,
}

// References, lifetimes, slices, maps.
#[memoize(store = CACHE)]
fn borrowed<'a>(name: &'a str, data: &[f64], tags: &HashMap<String, u32>) -> Vec<String> {
    vec![name.to_owned(); data.len() + tags.len()]
}

// Generics with bounds in both places, and a const parameter.
#[memoize(store = SHARED)]
fn generic<T: Serialize + Default, const N: usize>(items: Vec<T>) -> usize
where
    T: Clone,
{
    items.len() * N
}

// `impl Trait` in argument position.
#[memoize(store = store())]
fn described(x: impl Serialize + std::fmt::Debug) -> String {
    format!("{x:?}")
}

// A raw identifier and a `_` argument.
#[memoize(store = CACHE)]
fn raw(r#type: u8, _: u8) -> u8 {
    r#type
}

// `Result` with an error type that has no serde, `?` and `return`.
#[derive(Debug)]
struct NotSerde;

#[memoize(store = CACHE)]
fn fallible(x: i32) -> Result<Fit, NotSerde> {
    if x == 0 {
        return Err(NotSerde);
    }
    let half = i32::checked_div(x, 2).ok_or(NotSerde)?;
    Ok(Fit { slope: f64::from(half) })
}

// `std::io::Result`: an alias with one parameter.
#[memoize(store = CACHE)]
fn io_result(x: u32) -> std::io::Result<u32> {
    Ok(x)
}

// Patterns: the names they bind are hashed.
#[memoize(store = CACHE)]
fn pattern((a, b): (u32, u32), Fit { slope }: Fit, [first, ..]: [u8; 3]) -> f64 {
    f64::from(a + b + u32::from(first)) * slope
}

// Nothing returned.
#[memoize(store = CACHE)]
fn unit(_x: u32) {}

#[derive(Serialize)]
struct Model {
    weights: Vec<f64>,
}

impl Model {
    #[memoize(store = CACHE, helpers)]
    pub fn predict(&self, x: f64) -> f64 {
        self.weights.iter().map(|w| w * x).sum()
    }

    #[memoize(store = CACHE)]
    fn into_total(self) -> f64 {
        self.weights.iter().sum()
    }

    // An associated function with no receiver.
    #[memoize(store = CACHE)]
    fn zeros(n: usize) -> Vec<f64> {
        vec![0.0; n]
    }
}

#[derive(Serialize)]
struct Wrapper<T>(T);

impl<T: Serialize> Wrapper<T> {
    #[memoize(store = CACHE)]
    fn len_of(&self, extra: u32) -> u32
    where
        T: Clone,
    {
        extra
    }
}

#[memoize(store = CACHE, helpers)]
async fn fetch(id: u32, label: &str) -> Result<String, String> {
    let id = std::future::ready(id).await;
    Ok(format!("{label}{id}"))
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

// A crate that re-exports memo names the path its users reach it by.
mod reexport {
    pub use memo_core as memo;
}

#[memoize(crate = reexport::memo, store = CACHE)]
fn through_a_reexport(x: u32) -> u32 {
    x + 1
}

// `<name>_lazy` through a re-export, and a `Lazy` argument of a function
// with the in-process tier.
#[memoize(crate = reexport::memo, store = CACHE, helpers, ignore(note))]
fn upstream(x: u32, note: String) -> Vec<u32> {
    let _ = note;
    vec![x; 3]
}

#[memoize(store = CACHE, memory = 8)]
fn downstream(up: memo_core::Lazy<Vec<u32>>) -> u32 {
    up.iter().sum()
}

fn main() {
    assert_eq!(downstream(upstream_lazy(2, "n".to_owned())), 6);
    assert_eq!(through_a_reexport(1), 2);
    let tags = HashMap::from([("a".to_owned(), 1)]);
    assert_eq!(borrowed("x", &[1.0], &tags).len(), 2);
    assert_eq!(generic::<u8, 3>(vec![1, 2]), 6);
    assert_eq!(described(7_u8), "7");
    assert_eq!(raw(1, 2), 1);
    assert!(fallible(0).is_err());
    assert_eq!(fallible(4).unwrap(), Fit { slope: 2.0 });
    assert_eq!(io_result(3).unwrap(), 3);
    unit(1);
    assert!((pattern((1, 2), Fit { slope: 2.0 }, [3, 0, 0]) - 12.0).abs() < 1e-12);
    let m = Model { weights: vec![1.0, 2.0] };
    assert!((m.predict(2.0) - 6.0).abs() < 1e-12);
    assert!(Model::predict_is_cached(&m, 2.0));
    let _ = Model::predict_stats();
    assert!((m.into_total() - 3.0).abs() < 1e-12);
    assert_eq!(Model::zeros(2), vec![0.0, 0.0]);
    let w: Wrapper<u8> = Wrapper(1);
    assert_eq!(w.len_of(5), 5);
    let _ = w.0;
    let fut = assert_send(fetch(1, "id-"));
    assert_eq!(pollster::block_on(fut).unwrap(), "id-1");
    let fut = assert_send(fetch_recompute(1, "id-"));
    assert_eq!(pollster::block_on(fut).unwrap(), "id-1");
    assert!(fetch_is_cached(1, "id-"));
    assert!(fetch_clear().unwrap() >= 1);
}
