// A type parameter without `Serialize`, a method's `Self` without it, and
// an argument inside a tuple pattern: each reported once, at its type.
use memo_core::memoize;

#[memoize]
fn mean<T: Copy + Into<f64>>(xs: Vec<T>) -> f64 {
    xs.iter().map(|&x| x.into()).sum::<f64>() / xs.len() as f64
}

struct Model {
    weight: f64,
}

impl Model {
    #[memoize]
    fn predict(&self, x: u32) -> f64 {
        self.weight * f64::from(x)
    }
}

struct Grid;

#[memoize]
fn cell((row, grid): (u32, Grid)) -> u32 {
    let _ = grid;
    row
}

fn main() {
    mean(vec![1.0_f32]);
    Model { weight: 1.0 }.predict(2);
    cell((1, Grid));
}
