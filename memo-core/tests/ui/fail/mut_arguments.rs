use memo_core::memoize;

#[memoize]
fn fill(out: &mut Vec<u32>, n: u32) -> usize {
    out.extend(0..n);
    out.len()
}

#[derive(serde::Serialize)]
struct Counter(u32);

impl Counter {
    #[memoize]
    fn bump(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

fn main() {
    fill(&mut Vec::new(), 3);
    Counter(0).bump();
}
