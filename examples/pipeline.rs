//! A joblib-style pipeline: load → clean → features → fit → evaluate, each
//! step memoized.
//!
//! Each step takes the previous step's output as its argument, so its key
//! covers everything upstream. Change one step's parameter and that step and
//! those after it recompute; the steps before it load:
//!
//! ```text
//! cargo run --release --example pipeline                  # every step runs
//! cargo run --release --example pipeline                  # every step loads
//! cargo run --release --example pipeline -- --degree 4    # features, fit, evaluate run
//! cargo run --release --example pipeline -- --clip 2.5    # clean onwards runs
//! ```
//!
//! Options: `--rows N` (load), `--clip Z` (clean), `--degree D` (features),
//! `--ridge L` (fit). The store is `target/memo-pipeline`.

use std::time::Instant;

use memo_core::memoize;
use serde::{Deserialize, Serialize};

/// One observation: an input and a noisy response.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Row {
    x: f64,
    y: f64,
}

/// A dense row-major design matrix.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Matrix {
    cols: usize,
    data: Vec<f64>,
}

/// A fitted linear model on the features.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Model {
    weights: Vec<f64>,
}

/// Prints that a step's body is running: it runs only on a miss.
fn ran(step: &str) {
    println!("  running {step}");
}

/// Generates `rows` observations of a noisy cubic with outliers (standing in
/// for reading and parsing a large file).
#[memoize(dir = "target/memo-pipeline")]
fn load(rows: usize, seed: u64) -> Vec<Row> {
    ran("load");
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
            // A sum of uniforms: roughly normal noise, made slow on purpose
            // to stand in for real parsing work.
            let noise: f64 = (0..300).map(|_| uniform() - 0.5).sum::<f64>() * 0.02;
            let outlier = if uniform() < 0.01 { 40.0 } else { 0.0 };
            Row {
                x,
                y: 0.5 * x * x * x - x + 1.0 + noise + outlier,
            }
        })
        .collect()
}

/// Drops rows whose residual from a local median is more than `clip`
/// robust standard deviations (1.4826 × the median absolute deviation).
#[memoize(dir = "target/memo-pipeline")]
fn clean(raw: Vec<Row>, clip: f64) -> Vec<Row> {
    ran("clean");
    let mut rows = raw;
    rows.sort_by(|a, b| a.x.total_cmp(&b.x));
    // Residuals from the median of each window of 201 neighbours in x.
    let half = 100;
    let resid: Vec<f64> = (0..rows.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(rows.len());
            let mut w: Vec<f64> = rows[lo..hi].iter().map(|r| r.y).collect();
            let mid = w.len() / 2;
            let (_, m, _) = w.select_nth_unstable_by(mid, f64::total_cmp);
            rows[i].y - *m
        })
        .collect();
    let mut abs: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
    let mid = abs.len() / 2;
    let (_, mad, _) = abs.select_nth_unstable_by(mid, f64::total_cmp);
    let sigma = 1.4826 * *mad;
    rows.into_iter()
        .zip(resid)
        .filter(|(_, r)| r.abs() <= clip * sigma)
        .map(|(row, _)| row)
        .collect()
}

/// Polynomial features 1, x, x², ... x^degree.
#[memoize(dir = "target/memo-pipeline")]
fn features(rows: Vec<Row>, degree: u32) -> (Matrix, Vec<f64>) {
    ran("features");
    let cols = degree as usize + 1;
    let mut data = Vec::with_capacity(rows.len() * cols);
    for r in &rows {
        let mut p = 1.0;
        for _ in 0..cols {
            data.push(p);
            p *= r.x;
        }
    }
    (Matrix { cols, data }, rows.iter().map(|r| r.y).collect())
}

/// Ridge regression by the normal equations, solved with Gaussian
/// elimination.
#[memoize(dir = "target/memo-pipeline")]
fn fit(x: Matrix, y: Vec<f64>, ridge: f64) -> Model {
    ran("fit");
    let k = x.cols;
    // [X'X + λI | X'y]
    let mut a = vec![vec![0.0; k + 1]; k];
    for (row, &yi) in x.data.chunks_exact(k).zip(&y) {
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
    Model { weights: w }
}

/// The coefficient of determination R² of the model on the data.
#[memoize(dir = "target/memo-pipeline")]
fn evaluate(model: Model, x: Matrix, y: Vec<f64>) -> f64 {
    ran("evaluate");
    let k = x.cols;
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (row, &yi) in x.data.chunks_exact(k).zip(&y) {
        let pred: f64 = row.iter().zip(&model.weights).map(|(a, b)| a * b).sum();
        ss_res += (yi - pred).powi(2);
        ss_tot += (yi - mean).powi(2);
    }
    1.0 - ss_res / ss_tot
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
    println!("pipeline: rows={rows} clip={clip} degree={degree} ridge={ridge}");
    let all = Instant::now();
    let t = Instant::now();
    let raw = load(rows, 42);
    println!("load      {:>10.2?}  {} rows", t.elapsed(), raw.len());
    let t = Instant::now();
    let cleaned = clean(raw, clip);
    println!(
        "clean     {:>10.2?}  {} rows kept",
        t.elapsed(),
        cleaned.len()
    );
    let t = Instant::now();
    let (x, y) = features(cleaned, degree);
    println!("features  {:>10.2?}  {} columns", t.elapsed(), x.cols);
    let t = Instant::now();
    let model = fit(x.clone(), y.clone(), ridge);
    println!(
        "fit       {:>10.2?}  weights {:.3?}",
        t.elapsed(),
        model.weights
    );
    let t = Instant::now();
    let r2 = evaluate(model, x, y);
    println!("evaluate  {:>10.2?}  R² = {r2:.4}", t.elapsed());
    println!("total     {:>10.2?}", all.elapsed());
}
