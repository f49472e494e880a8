use memo_core::{Store, memoize};

#[memoize(store = Store::open("cache").unwrap())]
fn a(x: u32) -> u32 {
    x
}

#[memoize(store = Store::builder("cache").max_bytes(1 << 30).open().unwrap())]
fn b(x: u32) -> u32 {
    x
}

fn main() {
    a(1);
    b(1);
}
