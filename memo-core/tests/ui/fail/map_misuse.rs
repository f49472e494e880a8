use memo_core::memoize;

#[memoize(map)]
async fn a(x: u32) -> u32 {
    x
}

#[memoize(map = true)]
fn b(x: u32) -> u32 {
    x
}

fn main() {
    b(1);
}
