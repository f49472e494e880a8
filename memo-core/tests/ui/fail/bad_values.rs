use memo_core::memoize;

const DIR: &str = "cache";

#[memoize(version = 1.5)]
fn a(x: u32) -> u32 {
    x
}

#[memoize(dir = DIR)]
fn b(x: u32) -> u32 {
    x
}

#[memoize(helpers = true)]
fn c(x: u32) -> u32 {
    x
}

#[memoize(version)]
fn d(x: u32) -> u32 {
    x
}

#[memoize(ignore = x)]
fn e(x: u32) -> u32 {
    x
}

#[memoize(memo::dir = "cache")]
fn g(x: u32) -> u32 {
    x
}

#[memoize(crate = "memo_core")]
fn h(x: u32) -> u32 {
    x
}

fn main() {
    h(1);
    e(1);
    g(1);
    a(1);
    b(1);
    c(1);
    d(1);
}
