// `compress` takes a compression named as `MEMO_COMPRESS` takes it, checked
// at compile time.
use memo_core::memoize;

#[memoize(compress = "gzip")]
fn a(x: u32) -> u32 {
    x
}

#[memoize(compress = "zstd:30")]
fn b(x: u32) -> u32 {
    x
}

#[memoize(compress = 3)]
fn c(x: u32) -> u32 {
    x
}

#[memoize(compress)]
fn d(x: u32) -> u32 {
    x
}

fn main() {
    a(1);
    b(1);
    c(1);
    d(1);
}
