use memo_core::memoize;

macro_rules! pair {
    ($a:ident, $b:ident) => {
        ($a, $b)
    };
}

#[memoize]
fn sum(pair!(a, b): (u32, u32)) -> u32 {
    a + b
}

fn main() {
    sum((1, 2));
}
