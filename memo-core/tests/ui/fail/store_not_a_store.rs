use memo_core::memoize;

static CACHE: &str = "results/cache";

#[memoize(store = CACHE)]
fn f(x: u32) -> u32 {
    x
}

fn main() {
    f(1);
}
