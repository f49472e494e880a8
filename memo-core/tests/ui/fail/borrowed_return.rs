use memo_core::memoize;

#[memoize]
fn name(id: u32) -> &'static str {
    if id == 0 { "zero" } else { "other" }
}

#[memoize]
fn parts(text: String) -> Vec<&'static str> {
    let _ = text;
    vec!["a"]
}

fn main() {
    name(1);
    parts(String::new());
}
