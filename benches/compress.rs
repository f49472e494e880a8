//! Compressed values against zstd alone, in one run (issue 28):
//!
//! - 64 MiB of compressible data, two kinds: int32 labels drawn from 100
//!   classes, and a JSON-like `Vec` of records (bincode bytes). Stored
//!   size against zstd level 3's own output of the same bytes; a put
//!   (`put_bytes`, and the typed `put`) against zstd's compression alone;
//!   a hit (`get_bytes`, and the typed `get`) against zstd's decompression
//!   alone into a new buffer. Targets: size ≤ zstd +2%, put ≥ 80% and hit
//!   ≥ 80% of zstd's throughput.
//! - 64 MiB of incompressible float64: a put into a compressing store
//!   against one into a store that does not compress (target ≤ 1.1x: the
//!   give-up is sampled), and its hit (unchanged: a view).
//! - 100-byte values, compression on against off: put and hit (≤ 1.1x).
//!
//! Medians of 7 (64 MiB rows) or 2001 (100-byte rows), runs alternating.
//! `MEMO_BENCH_COMPRESS_MIB` changes the 64. Results also go to
//! `target/memo-bench/compress.json`.

use std::time::{Duration, Instant};

use memo_core::{Array, Compression, Key, Store};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Record {
    id: u64,
    name: String,
    class: u16,
    score: f32,
    tags: Vec<String>,
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn labels(bytes: usize) -> Vec<i32> {
    let mut r = xorshift(7);
    (0..bytes / 4).map(|_| (r() % 100) as i32).collect()
}

fn records(bytes: usize) -> Vec<Record> {
    let mut r = xorshift(11);
    let classes = ["cat", "dog", "bird", "fish", "horse", "cow", "sheep"];
    let mut out = Vec::new();
    let mut size = 0;
    while size < bytes {
        let class = (r() % 7) as u16;
        let rec = Record {
            id: out.len() as u64,
            name: format!("sample-{:08}", r() % 10_000_000),
            class,
            score: (r() % 1000) as f32 / 1000.0,
            tags: vec![
                classes[class as usize].to_owned(),
                format!("batch-{}", r() % 50),
            ],
        };
        size += 8
            + 8
            + rec.name.len()
            + 2
            + 4
            + 8
            + rec.tags.iter().map(|t| 1 + t.len()).sum::<usize>();
        out.push(rec);
    }
    out
}

fn floats(bytes: usize) -> Vec<f64> {
    let mut r = xorshift(13);
    (0..bytes / 8)
        .map(|_| (r() >> 11) as f64 / (1u64 << 53) as f64)
        .collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

struct Row {
    name: String,
    memo: Duration,
    base: Duration,
    what: &'static str,
}

struct Bench {
    on: Store,
    off: Store,
    reps: usize,
    rows: Vec<Row>,
    json: Vec<String>,
    n: u64,
}

impl Bench {
    fn fresh(&mut self) -> Key {
        self.n += 1;
        Key::of(&("bench", self.n))
    }

    /// Stored size, put and hit of `raw` against zstd alone.
    fn compressible(&mut self, name: &str, raw: &[u8]) {
        let zstd_out = zstd::bulk::compress(raw, 3).expect("zstd");
        let before = self.on.stats().bytes;
        let key = self.fresh();
        self.on.put_bytes(&key, raw).expect("put");
        let stored = self.on.stats().bytes - before;
        let (mut zc, mut mp, mut zd, mut mh) = (vec![], vec![], vec![], vec![]);
        for _ in 0..self.reps {
            zc.push(timed(|| zstd::bulk::compress(raw, 3).expect("zstd")));
            let k = self.fresh();
            mp.push(timed(|| self.on.put_bytes(&k, raw).expect("put")));
            self.on.remove(&k).expect("remove");
            zd.push(timed(|| {
                zstd::bulk::decompress(&zstd_out, raw.len()).expect("unzstd")
            }));
            mh.push(timed(|| {
                self.on.get_bytes(&key).expect("get").expect("hit")
            }));
        }
        let (zc, mp, zd, mh) = (median(zc), median(mp), median(zd), median(mh));
        println!(
            "{name}: {} MiB raw; stored {stored} bytes, zstd -3 alone {} bytes ({:+.2}%)",
            raw.len() >> 20,
            zstd_out.len(),
            (stored as f64 / zstd_out.len() as f64 - 1.0) * 100.0
        );
        for (what, m, z, zw) in [("put", mp, zc, "compress"), ("hit", mh, zd, "decompress")] {
            println!(
                "  {what} {:.1} ms ({:.0} MB/s), zstd {zw} alone {:.1} ms ({:.0} MB/s): {:.0}% of its throughput",
                ms(m),
                mbps(raw.len(), m),
                ms(z),
                mbps(raw.len(), z),
                100.0 * z.as_secs_f64() / m.as_secs_f64()
            );
        }
        self.json.push(format!(
            "{{\"data\": \"{name}\", \"raw\": {}, \"stored\": {stored}, \"zstd\": {}, \"put_ms\": {}, \"zstd_compress_ms\": {}, \"hit_ms\": {}, \"zstd_decompress_ms\": {}}}",
            raw.len(),
            zstd_out.len(),
            ms(mp),
            ms(zc),
            ms(mh),
            ms(zd)
        ));
        self.row(&format!("{name}: put"), mp, zc, "zstd -3 compress");
        self.row(&format!("{name}: hit"), mh, zd, "zstd decompress");
    }

    fn row(&mut self, name: &str, memo: Duration, base: Duration, what: &'static str) {
        self.rows.push(Row {
            name: name.to_owned(),
            memo,
            base,
            what,
        });
    }

    /// Typed puts and gets: the value through the codec too (what a
    /// memoized function pays).
    fn typed<V>(&mut self, name: &str, value: &V)
    where
        V: Serialize + serde::de::DeserializeOwned,
    {
        let key = self.fresh();
        self.on.put(&key, value).expect("put");
        let (mut tp, mut th) = (vec![], vec![]);
        for _ in 0..self.reps {
            let k = self.fresh();
            tp.push(timed(|| self.on.put(&k, value).expect("put")));
            self.on.remove(&k).expect("remove");
            th.push(timed(|| self.on.get::<V>(&key).expect("get").expect("hit")));
        }
        println!(
            "{name} typed: put {:.1} ms, get {:.1} ms",
            ms(median(tp)),
            ms(median(th))
        );
    }

    /// Incompressible float64: the give-up must be cheap, the hit a view.
    fn incompressible(&mut self, len: usize) {
        let arr: Array<f64> = Array::from(floats(len));
        let (mut p_on, mut p_off, mut h_on, mut h_off) = (vec![], vec![], vec![], vec![]);
        let (k_on, k_off) = (self.fresh(), self.fresh());
        let was = self.on.stats();
        self.on.put(&k_on, &arr).expect("put");
        self.off.put(&k_off, &arr).expect("put");
        for _ in 0..self.reps {
            let (a, b) = (self.fresh(), self.fresh());
            p_off.push(timed(|| {
                self.off.put_bytes(&b, arr.as_bytes()).expect("put");
            }));
            p_on.push(timed(|| {
                self.on.put_bytes(&a, arr.as_bytes()).expect("put");
            }));
            self.off.remove(&b).expect("remove");
            self.on.remove(&a).expect("remove");
            h_off.push(timed(|| {
                self.off
                    .get::<Array<f64>>(&k_off)
                    .expect("get")
                    .expect("hit")
            }));
            h_on.push(timed(|| {
                self.on.get::<Array<f64>>(&k_on).expect("get").expect("hit")
            }));
        }
        let s = self.on.stats();
        assert_eq!(
            s.raw_bytes - s.bytes,
            was.raw_bytes - was.bytes,
            "incompressible data is stored raw"
        );
        let (p_on, p_off, h_on, h_off) = (median(p_on), median(p_off), median(h_on), median(h_off));
        println!(
            "incompressible float64: put {:.1} ms compressing, {:.1} ms not ({:.2}x); hit {:.1} us vs {:.1} us",
            ms(p_on),
            ms(p_off),
            p_on.as_secs_f64() / p_off.as_secs_f64(),
            h_on.as_secs_f64() * 1e6,
            h_off.as_secs_f64() * 1e6
        );
        self.row(
            "incompressible float64: put",
            p_on,
            p_off,
            "uncompressed store",
        );
        self.row(
            "incompressible float64: hit (Array view)",
            h_on,
            h_off,
            "uncompressed store",
        );
    }

    /// 100-byte values: compression on costs nothing.
    fn small(&mut self) {
        let small: Vec<u8> = (0..100).map(|i| i as u8).collect();
        let keys: Vec<Key> = (0..2001).map(|i| Key::of(&("small", i))).collect();
        let (mut p_on, mut p_off, mut h_on, mut h_off) = (vec![], vec![], vec![], vec![]);
        for k in &keys {
            p_off.push(timed(|| self.off.put_bytes(k, &small).expect("put")));
            p_on.push(timed(|| self.on.put_bytes(k, &small).expect("put")));
        }
        for k in &keys {
            h_off.push(timed(|| self.off.get_bytes(k).expect("get").expect("hit")));
            h_on.push(timed(|| self.on.get_bytes(k).expect("get").expect("hit")));
        }
        let (p_on, p_off, h_on, h_off) = (median(p_on), median(p_off), median(h_on), median(h_off));
        println!(
            "100 B: put {:.2} us on, {:.2} us off ({:.2}x); hit {:.3} us on, {:.3} us off ({:.2}x)",
            p_on.as_secs_f64() * 1e6,
            p_off.as_secs_f64() * 1e6,
            p_on.as_secs_f64() / p_off.as_secs_f64(),
            h_on.as_secs_f64() * 1e6,
            h_off.as_secs_f64() * 1e6,
            h_on.as_secs_f64() / h_off.as_secs_f64()
        );
        self.row("100 B put", p_on, p_off, "compression off");
        self.row("100 B hit", h_on, h_off, "compression off");
    }
}

fn main() {
    let mib: usize = std::env::var("MEMO_BENCH_COMPRESS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let len = mib << 20;
    let dir = tempfile::tempdir().expect("dir");
    let mut b = Bench {
        on: Store::builder(dir.path().join("on"))
            .compress(Compression::Zstd { level: 3 })
            .open()
            .expect("store"),
        off: Store::open(dir.path().join("off")).expect("store"),
        reps: 7,
        rows: Vec::new(),
        json: Vec::new(),
        n: 0,
    };
    let label_values = labels(len);
    // The size estimate counts fixed-width integers; bincode's varints
    // take about two thirds of that.
    let record_values = records(len * 3 / 2);
    b.compressible("int32 labels, 100 classes", &bytemuck_bytes(&label_values));
    b.compressible(
        "JSON-like records (bincode)",
        &bincode_bytes(&record_values),
    );
    b.typed("int32 labels (Vec<i32>)", &label_values);
    b.typed("records (Vec<Record>)", &record_values);
    b.incompressible(len);
    b.small();
    println!();
    println!("| row | memo | baseline | ratio |");
    println!("| --- | ---: | --- | ---: |");
    for r in &b.rows {
        println!(
            "| {} | {:.3} ms | {} {:.3} ms | {:.2}x |",
            r.name,
            ms(r.memo),
            r.what,
            ms(r.base),
            r.memo.as_secs_f64() / r.base.as_secs_f64()
        );
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/memo-bench");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(
        out.join("compress.json"),
        format!("[{}]\n", b.json.join(",\n")),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bytemuck_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bincode_bytes(v: &[Record]) -> Vec<u8> {
    // The bytes memo stores for the typed value (bincode, standard
    // configuration, as `memo_core`'s codec writes it).
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encode")
}
