use memo_core::memoize;

struct Params {
    rate: f64,
}

#[memoize]
fn simulate(steps: u32, params: &Params) -> f64 {
    f64::from(steps) * params.rate
}

fn main() {
    simulate(10, &Params { rate: 0.5 });
}
