// `uses` names a function without #[track]: an error at that name.
use memo_core::memoize;

fn normalize(x: f64) -> f64 {
    x / 2.0
}

#[memoize(uses(normalize))]
fn feature(x: u32) -> f64 {
    normalize(f64::from(x))
}

fn main() {
    feature(1);
}
