// A result that is `Serialize` but not `Deserialize`; the `Ok` type of an
// aliased `Result`; a sweep's result: each reported once, at the return
// type, naming the type that is stored.
use memo_core::memoize;

#[derive(serde::Serialize)]
struct Report {
    lines: Vec<String>,
}

#[memoize]
fn report(n: u32) -> Report {
    Report { lines: vec![n.to_string()] }
}

struct Fit;

type Fallible<T> = Result<T, String>;

#[memoize]
fn fit(n: u32) -> Fallible<Fit> {
    if n == 0 { Err("no points".into()) } else { Ok(Fit) }
}

#[memoize(map)]
fn sweep(n: u32) -> Fit {
    let _ = n;
    Fit
}

fn main() {
    report(1);
    let _ = fit(1);
    sweep(1);
}
