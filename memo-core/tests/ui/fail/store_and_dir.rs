use memo_core::{Store, memoize};
use std::sync::LazyLock;

static CACHE: LazyLock<Store> = LazyLock::new(|| Store::open("cache").unwrap());

#[memoize(store = CACHE, dir = "cache")]
fn f(x: u32) -> u32 {
    x
}

fn main() {
    f(1);
}
