//! Guards sharing between processes: what one process commits, another
//! sees, including while it is still writing. Children are this test binary
//! re-run with a role in `MEMO_TEST_ROLE`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::process::Command;

use memo_core::{Key, Store};
use memo_tests::tempdir;

const N: u32 = 3000;

fn value(i: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(500) {
        100_000
    } else {
        (i % 300) as usize
    };
    (0..len).map(|j| (j as u32).wrapping_mul(i) as u8).collect()
}

fn child(role: &str, dir: &std::path::Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("MEMO_TEST_ROLE", role)
        .env("MEMO_TEST_DIR", dir)
        // The child's own test-harness lines would read as this run's.
        .stdout(std::process::Stdio::null());
    c
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("MEMO_TEST_ROLE") else {
        return;
    };
    let store = Store::open(std::env::var("MEMO_TEST_DIR").unwrap()).unwrap();
    match role.as_str() {
        "writer" => {
            for i in 0..N {
                store.put_bytes(&Key::of(&i), &value(i)).unwrap();
            }
        }
        "reader" => {
            // Reads while the writer writes: every hit must be exact.
            let mut seen = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen < N && std::time::Instant::now() < deadline {
                seen = 0;
                for i in 0..N {
                    if let Some(b) = store.get_bytes(&Key::of(&i)).unwrap() {
                        assert!(*b == value(i)[..], "wrong bytes for {i}");
                        seen += 1;
                    }
                }
            }
            assert_eq!(seen, N, "the reader saw every committed entry");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_second_process_reads_what_the_first_wrote() {
    let dir = tempdir();
    let mut reader = child("reader", dir.path()).spawn().unwrap();
    let status = child("writer", dir.path()).status().unwrap();
    assert!(status.success());
    assert!(reader.wait().unwrap().success());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.len(), u64::from(N));
    for i in 0..N {
        assert!(*store.get_bytes(&Key::of(&i)).unwrap().unwrap() == value(i)[..]);
    }
    assert!(store.verify().unwrap().is_clean());
}
