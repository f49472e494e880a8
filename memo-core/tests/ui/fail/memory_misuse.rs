// `memory` takes a positive count, and keeps results of synchronous
// functions only.
use memo_core::memoize;

#[memoize(memory = 0)]
fn a(x: u32) -> u32 {
    x
}

#[memoize(memory = "lots")]
fn b(x: u32) -> u32 {
    x
}

#[memoize(memory = 8)]
async fn c(x: u32) -> u32 {
    x
}

fn main() {
    a(1);
    b(1);
    let _ = c(1);
}
