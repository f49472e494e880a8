//! Every name memo gives a file, the predicates that recognise them, and
//! the store marker in `LOCK`: a sweep or `clear` removes only names that
//! parse here, so a file memo did not make is never removed, whatever
//! directory it is found in; and a directory is adopted as a store only
//! with the marker (`docs/format.md`).

use super::{FORMAT_VERSION, INDEX_FILE, le32, loc};
use crate::Key;

/// `seg/NNNNNN`: segments are numbered from 1 and never reuse a number.
pub(crate) fn segment_name(id: u32) -> String {
    format!("{id:06}")
}

/// The number of a segment file name (six digits, 1 ..= `SEG_ID_MAX`).
pub(crate) fn parse_segment_name(name: &str) -> Option<u32> {
    if name.len() != 6 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse::<u32>()
        .ok()
        .filter(|id| (1..=loc::SEG_ID_MAX).contains(id))
}

/// The fan-out directory of a key's blobs under `blob/`: the key's first
/// two hex digits.
pub(crate) fn blob_fanout(key: &Key) -> String {
    key.to_string()[..2].to_owned()
}

/// Whether `name` is a fan-out directory name (two lowercase hex digits).
pub(crate) fn is_blob_fanout(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(is_lower_hex)
}

/// `<key hex>.<blob id hex>` inside the fan-out directory. The id makes a
/// replaced value a new file: a reader that found the old id keeps opening
/// the old file until the writer unlinks it, instead of finding the new one
/// under the old name.
pub(crate) fn blob_name(key: &Key, id: u64) -> String {
    format!("{key}.{id:016x}")
}

/// Whether `name` is a blob file name that belongs in fan-out directory
/// `fanout`.
pub(crate) fn is_blob_name(fanout: &str, name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 64 + 1 + 16
        && b[64] == b'.'
        && b[..64].iter().chain(&b[65..]).copied().all(is_lower_hex)
        && name.starts_with(fanout)
}

/// `locks/<key hex>`: a key's compute lock.
pub(crate) fn lock_name(key: &Key) -> String {
    key.to_string()
}

/// Whether `name` is a compute lock's name.
pub(crate) fn is_lock_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(is_lower_hex)
}

/// `tmp/blob-<key hex prefix>.<blob id hex>`: a blob being written.
pub(crate) fn tmp_blob_name(key: &Key, id: u64) -> String {
    format!("blob-{}.{id:016x}", &key.to_string()[..16])
}

/// `tmp/seg-NNNNNN`: a segment being created.
pub(crate) fn tmp_segment_name(id: u32) -> String {
    format!("seg-{}", segment_name(id))
}

/// `tmp/index.<pid>.<n>`: a grown or emptied index being built.
pub(crate) fn tmp_index_name(pid: u32, n: u64) -> String {
    format!("{INDEX_FILE}.{pid}.{n}")
}

/// `tmp/index.next.<table id hex>`: the table prepared for the next growth
/// of the table with that id.
pub(crate) fn next_index_name(table_id: u64) -> String {
    format!("{INDEX_FILE}.next.{table_id:016x}")
}

/// `tmp/index.rebuild.<pid>`: an index being rebuilt from the segments.
pub(crate) fn tmp_rebuild_name(pid: u32) -> String {
    format!("{INDEX_FILE}.rebuild.{pid}")
}

/// `fns/<16 hex tag>`: the registry entry of a function.
pub(crate) fn fn_entry_name(tag: [u8; 8]) -> String {
    format!("{:016x}", u64::from_be_bytes(tag))
}

/// The tag a registry entry's name gives.
pub(crate) fn parse_fn_entry_name(name: &str) -> Option<[u8; 8]> {
    if name.len() != 16 || !name.bytes().all(is_lower_hex) {
        return None;
    }
    let mut tag = [0; 8];
    for (k, t) in tag.iter_mut().enumerate() {
        *t = u8::from_str_radix(&name[2 * k..2 * k + 2], 16).ok()?;
    }
    Some(tag)
}

/// `tmp/fn-<16 hex tag>.<pid>`: a registry entry (or, with a zero tag, the
/// miss counter table) being written.
pub(crate) fn tmp_fn_name(tag: [u8; 8], pid: u32) -> String {
    format!("fn-{}.{pid}", fn_entry_name(tag))
}

/// Whether `name` is one of the names memo gives files in `tmp/`.
pub(crate) fn is_tmp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix("blob-") {
        let b = rest.as_bytes();
        return b.len() == 16 + 1 + 16
            && b[16] == b'.'
            && b[..16].iter().chain(&b[17..]).copied().all(is_lower_hex);
    }
    if let Some(rest) = name.strip_prefix("seg-") {
        return parse_segment_name(rest).is_some();
    }
    if let Some(rest) = name.strip_prefix("fn-") {
        return rest
            .split_once('.')
            .is_some_and(|(t, pid)| parse_fn_entry_name(t).is_some() && digits(pid));
    }
    if let Some(rest) = name.strip_prefix("index.") {
        if let Some(pid) = rest.strip_prefix("rebuild.") {
            return digits(pid);
        }
        if let Some(id) = rest.strip_prefix("next.") {
            return id.len() == 16 && id.bytes().all(is_lower_hex);
        }
        return rest
            .split_once('.')
            .is_some_and(|(a, b)| digits(a) && digits(b));
    }
    false
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `<dir>/index.damaged-<unix time>`: a damaged index kept for inspection.
pub(crate) fn damaged_index_name(secs: u64) -> String {
    format!("{INDEX_FILE}.damaged-{secs}")
}

// The store marker.

/// The content of `LOCK`, which marks a directory as a memo store: memo
/// adopts only an empty directory or one whose `LOCK` holds this.
pub(crate) const STORE_MAGIC: [u8; 8] = *b"memo-dir";
/// `LOCK`'s bytes: magic, format version (u32), four zero bytes.
pub(crate) const MARKER_LEN: usize = 16;

pub(crate) fn encode_marker() -> [u8; MARKER_LEN] {
    let mut m = [0u8; MARKER_LEN];
    m[0..8].copy_from_slice(&STORE_MAGIC);
    m[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    m
}

/// What `LOCK`'s bytes say about the directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// A store of this format version.
    Ok,
    /// Empty: a store being made by another process (or by one that died
    /// before it wrote the marker), or one made before the marker existed.
    Empty,
    /// A store of another format version.
    Version(u32),
    /// Not memo's.
    Foreign,
}

pub(crate) fn check_marker(bytes: &[u8]) -> Marker {
    if bytes.is_empty() {
        return Marker::Empty;
    }
    if bytes.len() != MARKER_LEN || bytes[0..8] != STORE_MAGIC {
        return Marker::Foreign;
    }
    match le32(&bytes[8..12]) {
        FORMAT_VERSION => Marker::Ok,
        v => Marker::Version(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_is_ours() {
        let key = Key::of("k");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        for bad in ["000000", "42", "0000042", "00004a", "+00042", "results.csv"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
        let fan = blob_fanout(&key);
        assert!(is_blob_fanout(&fan));
        assert!(is_blob_name(&fan, &blob_name(&key, 7)));
        assert!(!is_blob_name("zz", &blob_name(&key, 7)));
        assert!(!is_blob_fanout("AB") && !is_blob_fanout("abc"));
        assert!(is_lock_name(&lock_name(&key)));
        for ours in [
            tmp_blob_name(&key, u64::MAX),
            tmp_segment_name(9),
            tmp_index_name(123, 4),
            tmp_rebuild_name(77),
        ] {
            assert!(is_tmp_name(&ours), "{ours}");
        }
        for theirs in [
            "notes.txt",
            "blob-",
            "blob-0123456789abcdef.0123456789abcdeg",
            "seg-1",
            "index",
            "index.",
            "index.1",
            "index.1.x",
            "index.rebuild.",
            "ssh.key",
            "important.txt",
        ] {
            assert!(!is_tmp_name(theirs), "{theirs}");
            assert!(!is_lock_name(theirs), "{theirs}");
        }
        assert_eq!(check_marker(&encode_marker()), Marker::Ok);
        assert_eq!(check_marker(&[]), Marker::Empty);
        assert_eq!(check_marker(b"hello"), Marker::Foreign);
        let mut m = encode_marker();
        m[8] = 9;
        assert_eq!(check_marker(&m), Marker::Version(9));
    }
}
