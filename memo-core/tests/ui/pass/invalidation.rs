// The invalidation options compile together, on functions, methods and
// async functions, with tracked helpers in other modules.
use memo_core::{memoize, track};

mod helpers {
    #[memo_core::track]
    pub fn scale(x: f64) -> f64 {
        x * 2.0
    }

    #[memo_core::track(uses(scale))]
    pub(crate) fn both(x: f64) -> f64 {
        scale(x) + 1.0
    }
}

#[track(uses(helpers::both))]
fn top(x: f64) -> f64 {
    helpers::both(x)
}

#[memoize(ttl = "1h", min_cost = "5ms", uses(top, helpers::scale))]
fn feature(x: u32) -> f64 {
    top(f64::from(x))
}

#[derive(serde::Serialize)]
struct Model;

impl Model {
    #[memoize(ttl = "7d", uses(top))]
    fn predict(&self, x: u32) -> Result<f64, String> {
        Ok(top(f64::from(x)))
    }
}

#[memoize(min_cost = "1s 500ms")]
async fn fetch(x: u32) -> u32 {
    x
}

fn main() {
    let _ = feature(1);
    let _ = Model.predict(2);
    let _ = fetch(3);
}
