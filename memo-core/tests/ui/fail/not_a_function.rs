use memo_core::memoize;

#[memoize]
struct Model {
    weights: Vec<f64>,
}

fn main() {}
