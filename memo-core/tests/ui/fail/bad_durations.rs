// `ttl` and `min_cost` take durations as people write them; `uses`
// names at least one helper.
use memo_core::memoize;

#[memoize(ttl = "1 hour")]
fn a(x: u32) -> u32 {
    x
}

#[memoize(ttl = 3600)]
fn b(x: u32) -> u32 {
    x
}

#[memoize(ttl = "500us")]
fn c(x: u32) -> u32 {
    x
}

#[memoize(min_cost = "fast")]
fn d(x: u32) -> u32 {
    x
}

#[memoize(min_cost)]
fn e(x: u32) -> u32 {
    x
}

#[memoize(uses())]
fn f(x: u32) -> u32 {
    x
}

fn main() {
    f(1);
    a(1);
    b(1);
    c(1);
    d(1);
    e(1);
}
