use memo_core::memoize;

struct Fit {
    slope: f64,
}

#[memoize]
fn fit(points: Vec<f64>) -> Fit {
    Fit { slope: points.iter().sum() }
}

fn main() {
    let _ = fit(vec![1.0]).slope;
}
