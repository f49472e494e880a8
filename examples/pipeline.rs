//! A joblib-style pipeline: load → clean → features → fit → evaluate, each
//! step memoized, at the speed of its data.
//!
//! Each step takes its upstream step's result as a [`Lazy`]: a key, made
//! without computing or reading anything. A step is therefore keyed by its
//! upstream's identity (which covers the upstream's code, version and
//! arguments), not by re-hashing its data, and when a step is cached the
//! steps before it are never even read. Columns are [`Array`]s, which a hit
//! hands back as a view of the mapped file: no decode, no copy. Change one
//! step's parameter and that step and those after it recompute; the steps
//! before it load:
//!
//! ```text
//! cargo run --release --example pipeline                  # every step runs
//! cargo run --release --example pipeline                  # every step cached: well under 10 ms
//! cargo run --release --example pipeline -- --degree 4    # features, fit, evaluate run
//! cargo run --release --example pipeline -- --clip 2.5    # clean onwards runs
//! cargo run --release --example pipeline -- --by-value    # the same steps, by value
//! ```
//!
//! `--by-value` runs the same computations written the plain way: each step
//! takes the previous step's result by value, in `Vec`s. It is cached just
//! as well, but a cached run decodes every column and re-hashes it as the
//! next step's argument, so it costs time in proportion to the data.
//!
//! Options: `--rows N` (load), `--clip Z` (clean), `--degree D` (features),
//! `--ridge L` (fit). The store is `target/memo-pipeline`.

#![allow(
    clippy::needless_pass_by_value,
    reason = "a step takes its upstream by value, as its key is made of it"
)]

use std::time::Instant;

use memo_core::{Array, Lazy, memoize};
use serde::{Deserialize, Serialize};

/// Prints that a step's body ran (it runs only on a miss), and for how long.
fn ran(step: &str, started: Instant) {
    println!("  ran {step:<9} {:>10.2?}", started.elapsed());
}

/// The steps with their data by reference: `Lazy` arguments, `Array`
/// columns.
mod by_reference {
    use super::{Array, Deserialize, Instant, Lazy, Serialize, kernel, memoize, ran};

    /// Observations, as two columns.
    #[derive(Serialize, Deserialize, Clone, Debug)]
    pub struct Columns {
        pub x: Array<f64>,
        pub y: Array<f64>,
    }

    /// A dense row-major design matrix and the response.
    #[derive(Serialize, Deserialize, Clone, Debug)]
    pub struct Design {
        pub cols: usize,
        pub data: Array<f64>,
        pub y: Array<f64>,
    }

    #[memoize(dir = "target/memo-pipeline", helpers)]
    pub fn load(rows: usize, seed: u64) -> Columns {
        let t = Instant::now();
        let (x, y) = kernel::generate(rows, seed);
        ran("load", t);
        Columns {
            x: x.into(),
            y: y.into(),
        }
    }

    #[memoize(dir = "target/memo-pipeline", helpers)]
    pub fn clean(raw: Lazy<Columns>, clip: f64) -> Columns {
        // The upstream runs or loads here, on first deref: timed apart.
        let raw = &*raw;
        let t = Instant::now();
        let (x, y) = kernel::clip_outliers(&raw.x, &raw.y, clip);
        ran("clean", t);
        Columns {
            x: x.into(),
            y: y.into(),
        }
    }

    #[memoize(dir = "target/memo-pipeline", helpers)]
    pub fn features(rows: Lazy<Columns>, degree: u32) -> Design {
        let rows = &*rows;
        let t = Instant::now();
        let (cols, data) = kernel::design(&rows.x, degree);
        ran("features", t);
        Design {
            cols,
            data: data.into(),
            y: rows.y.clone(),
        }
    }

    #[memoize(dir = "target/memo-pipeline", helpers)]
    pub fn fit(design: Lazy<Design>, ridge: f64) -> Vec<f64> {
        let d = &*design;
        let t = Instant::now();
        let w = kernel::ridge(&d.data, d.cols, &d.y, ridge);
        ran("fit", t);
        w
    }

    #[memoize(dir = "target/memo-pipeline")]
    pub fn evaluate(weights: Lazy<Vec<f64>>, design: Lazy<Design>) -> f64 {
        let (w, d) = (&*weights, &*design);
        let t = Instant::now();
        let r2 = kernel::r_squared(w, &d.data, d.cols, &d.y);
        ran("evaluate", t);
        r2
    }
}

/// The same steps written the plain way: results by value, in `Vec`s.
mod by_value {
    use super::{Deserialize, Instant, Serialize, kernel, memoize, ran};

    #[derive(Serialize, Deserialize, Clone, Debug)]
    pub struct Columns {
        pub x: Vec<f64>,
        pub y: Vec<f64>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug)]
    pub struct Design {
        pub cols: usize,
        pub data: Vec<f64>,
        pub y: Vec<f64>,
    }

    #[memoize(dir = "target/memo-pipeline")]
    pub fn load(rows: usize, seed: u64) -> Columns {
        let t = Instant::now();
        let (x, y) = kernel::generate(rows, seed);
        ran("load", t);
        Columns { x, y }
    }

    #[memoize(dir = "target/memo-pipeline")]
    pub fn clean(raw: Columns, clip: f64) -> Columns {
        let t = Instant::now();
        let (x, y) = kernel::clip_outliers(&raw.x, &raw.y, clip);
        ran("clean", t);
        Columns { x, y }
    }

    #[memoize(dir = "target/memo-pipeline")]
    pub fn features(rows: Columns, degree: u32) -> Design {
        let t = Instant::now();
        let (cols, data) = kernel::design(&rows.x, degree);
        ran("features", t);
        Design {
            cols,
            data,
            y: rows.y,
        }
    }

    #[memoize(dir = "target/memo-pipeline")]
    pub fn fit(design: Design, ridge: f64) -> Vec<f64> {
        let t = Instant::now();
        let w = kernel::ridge(&design.data, design.cols, &design.y, ridge);
        ran("fit", t);
        w
    }

    #[memoize(dir = "target/memo-pipeline")]
    pub fn evaluate(weights: Vec<f64>, design: Design) -> f64 {
        let t = Instant::now();
        let r2 = kernel::r_squared(&weights, &design.data, design.cols, &design.y);
        ran("evaluate", t);
        r2
    }
}

/// The computations themselves, on slices, shared by both styles.
mod kernel {
    /// `rows` observations of a noisy cubic with outliers (standing in for
    /// reading and parsing a large file): the inputs and the responses.
    pub fn generate(rows: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut s = seed | 1;
        let mut uniform = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1_u64 << 53) as f64
        };
        (0..rows)
            .map(|_| {
                let x = uniform() * 4.0 - 2.0;
                // A sum of uniforms: roughly normal noise, made slow on
                // purpose to stand in for real parsing work.
                let noise: f64 = (0..300).map(|_| uniform() - 0.5).sum::<f64>() * 0.02;
                let outlier = if uniform() < 0.01 { 40.0 } else { 0.0 };
                (x, 0.5 * x * x * x - x + 1.0 + noise + outlier)
            })
            .unzip()
    }

    /// The rows, sorted by x, whose residual from a local median is at most
    /// `clip` robust standard deviations (1.4826 × the median absolute
    /// deviation).
    pub fn clip_outliers(x: &[f64], y: &[f64], clip: f64) -> (Vec<f64>, Vec<f64>) {
        let mut order: Vec<usize> = (0..x.len().min(y.len())).collect();
        order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        let (xs, ys): (Vec<f64>, Vec<f64>) = order.iter().map(|&i| (x[i], y[i])).unzip();
        // Residuals from the median of each window of 201 neighbours in x.
        let half = 100;
        let resid: Vec<f64> = (0..ys.len())
            .map(|i| {
                let lo = i.saturating_sub(half);
                let hi = (i + half + 1).min(ys.len());
                let mut w = ys[lo..hi].to_vec();
                let mid = w.len() / 2;
                let (_, m, _) = w.select_nth_unstable_by(mid, f64::total_cmp);
                ys[i] - *m
            })
            .collect();
        let mut abs: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
        if abs.is_empty() {
            return (xs, ys);
        }
        let mid = abs.len() / 2;
        let (_, mad, _) = abs.select_nth_unstable_by(mid, f64::total_cmp);
        let sigma = 1.4826 * *mad;
        xs.into_iter()
            .zip(ys)
            .zip(resid)
            .filter(|(_, r)| r.abs() <= clip * sigma)
            .map(|(xy, _)| xy)
            .unzip()
    }

    /// Polynomial features 1, x, x², ... x^degree, row-major: the column
    /// count and the matrix.
    pub fn design(x: &[f64], degree: u32) -> (usize, Vec<f64>) {
        let cols = degree as usize + 1;
        let mut data = Vec::with_capacity(x.len() * cols);
        for &xi in x {
            let mut p = 1.0;
            for _ in 0..cols {
                data.push(p);
                p *= xi;
            }
        }
        (cols, data)
    }

    /// Ridge regression by the normal equations, solved with Gaussian
    /// elimination: the weights.
    #[allow(
        clippy::many_single_char_names,
        reason = "the textbook names of the normal equations"
    )]
    pub fn ridge(data: &[f64], k: usize, y: &[f64], ridge: f64) -> Vec<f64> {
        // [X'X + λI | X'y]
        let mut a = vec![vec![0.0; k + 1]; k];
        for (row, &yi) in data.chunks_exact(k).zip(y) {
            for i in 0..k {
                for j in 0..k {
                    a[i][j] += row[i] * row[j];
                }
                a[i][k] += row[i] * yi;
            }
        }
        for (i, r) in a.iter_mut().enumerate() {
            r[i] += ridge;
        }
        for col in 0..k {
            let pivot = (col..k)
                .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
                .unwrap_or(col);
            a.swap(col, pivot);
            let (done, rest) = a.split_at_mut(col + 1);
            let pivot_row = &done[col];
            for row in rest {
                let f = row[col] / pivot_row[col];
                for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * p;
                }
            }
        }
        let mut w = vec![0.0; k];
        for i in (0..k).rev() {
            let s: f64 = (i + 1..k).map(|j| a[i][j] * w[j]).sum();
            w[i] = (a[i][k] - s) / a[i][i];
        }
        w
    }

    /// The coefficient of determination R² of the weights on the data.
    pub fn r_squared(w: &[f64], data: &[f64], k: usize, y: &[f64]) -> f64 {
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let (mut ss_res, mut ss_tot) = (0.0, 0.0);
        for (row, &yi) in data.chunks_exact(k).zip(y) {
            let pred: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
            ss_res += (yi - pred).powi(2);
            ss_tot += (yi - mean).powi(2);
        }
        1.0 - ss_res / ss_tot
    }
}

/// The value after `--name` on the command line, or `default`.
fn option<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rows = option("--rows", 1_000_000_usize);
    let clip = option("--clip", 3.0_f64);
    let degree = option("--degree", 3_u32);
    let ridge = option("--ridge", 1e-3_f64);
    let by_value = std::env::args().any(|a| a == "--by-value");
    let style = if by_value { "by value" } else { "by reference" };
    println!("pipeline ({style}): rows={rows} clip={clip} degree={degree} ridge={ridge}");
    let all = Instant::now();
    let r2 = if by_value {
        use by_value::{clean, evaluate, features, fit, load};
        let design = features(clean(load(rows, 42), clip), degree);
        let weights = fit(design.clone(), ridge);
        evaluate(weights, design)
    } else {
        use by_reference::{clean_lazy, evaluate, features_lazy, fit_lazy, load_lazy};
        // Keys only, so far: each step runs (or loads) when the next one
        // needs its value, and when `evaluate` is cached none of them is
        // read at all.
        let design = features_lazy(clean_lazy(load_lazy(rows, 42), clip), degree);
        let weights = fit_lazy(design.clone(), ridge);
        evaluate(weights, design)
    };
    println!("R² = {r2:.4}");
    println!("total {:>10.2?}", all.elapsed());
}
