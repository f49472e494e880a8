use memo_core::memoize;

#[memoize(ignore(verbos, verbose, verbose))]
fn f(x: u32, verbose: bool) -> u32 {
    if verbose {
        println!("{x}");
    }
    x
}

fn main() {
    f(1, true);
}
