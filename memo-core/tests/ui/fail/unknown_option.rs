use memo_core::memoize;

#[memoize(cache_dir = "x")]
fn f(x: u32) -> u32 {
    x
}

fn main() {
    f(1);
}
