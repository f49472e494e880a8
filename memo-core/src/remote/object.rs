//! A remote object: one entry as it travels to and from a remote tier. A
//! fixed header (magic, version, codec, lengths, key, checksum and MAC) and
//! the value's encoded bytes, the same bytes the local store keeps. Drawn in
//! `docs/format.md`, "Remote objects".
//!
//! Nothing read from a remote is trusted: the header is checked field by
//! field, the length against the object's real size, the checksum over the
//! header and the value, and the MAC when the reader has a secret.

use crate::Key;

/// First bytes of every remote object.
pub(crate) const MAGIC: &[u8; 8] = b"memo-rmt";
/// Remote format version; in object names too, so versions never mix.
pub(crate) const VERSION: u32 = 1;
/// Header bytes before the value.
pub(crate) const HEADER_LEN: usize = 112;
/// Header bytes the checksum and MAC cover, with the value.
const COVERED: usize = 64;
/// `flags` bit: the object carries a MAC.
const FLAG_MAC: u8 = 1;
/// Context of the MAC key derivation (blake3's `derive_key`).
const MAC_CONTEXT: &str = "memo remote object MAC v1 2026-12-01";

/// The key of the keyed MAC, derived from the user's secret.
#[derive(Clone)]
pub(crate) struct MacKey([u8; 32]);

impl MacKey {
    pub(crate) fn new(secret: &[u8]) -> MacKey {
        MacKey(blake3::derive_key(MAC_CONTEXT, secret))
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// The object name of `key`'s entry, relative to the remote's root.
pub(crate) fn name(key: &Key) -> String {
    format!("memo/v{VERSION}/{key}")
}

/// The prefix of every entry's object name (leases are a level below).
pub(crate) fn prefix() -> String {
    format!("memo/v{VERSION}/")
}

/// The name of `key`'s compute lease.
pub(crate) fn lease_name(key: &Key) -> String {
    format!("memo/v{VERSION}/lease/{key}")
}

/// The header of `key`'s object holding `value` written by codec `codec`,
/// computed in `cost_us` microseconds; with a MAC when `mac` is given.
pub(crate) fn header(
    key: &Key,
    codec: u8,
    cost_us: u64,
    value: &[u8],
    mac: Option<&MacKey>,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12] = codec;
    h[13] = if mac.is_some() { FLAG_MAC } else { 0 };
    h[16..24].copy_from_slice(&(value.len() as u64).to_le_bytes());
    h[24..32].copy_from_slice(&cost_us.to_le_bytes());
    h[32..64].copy_from_slice(key.as_bytes());
    let sum = checksum(&h[..COVERED], value);
    h[64..80].copy_from_slice(&sum.to_le_bytes());
    if let Some(k) = mac {
        let t = tag(k, &h[..COVERED], value);
        h[80..112].copy_from_slice(&t);
    }
    h
}

/// A verified object: the value's codec, cost and where the value starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    pub codec: u8,
    pub cost_us: u64,
}

/// Why an object was refused (it is then a miss).
pub(crate) type Refusal = &'static str;

/// Checks a whole object read from the remote as `key`'s entry.
pub(crate) fn check(key: &Key, obj: &[u8], mac: Option<&MacKey>) -> Result<Checked, Refusal> {
    let h = obj.get(..HEADER_LEN).ok_or("shorter than a header")?;
    if &h[0..8] != MAGIC {
        return Err("not a memo object (bad magic)");
    }
    if h[8..12] != VERSION.to_le_bytes() {
        return Err("another remote format version");
    }
    if h[13] & !FLAG_MAC != 0 || h[14..16] != [0, 0] {
        return Err("unknown flags");
    }
    let len = u64::from_le_bytes(word(&h[16..24]));
    if len != (obj.len() - HEADER_LEN) as u64 {
        return Err("length differs from the object's size (truncated or padded)");
    }
    if h[32..64] != key.as_bytes()[..] {
        return Err("written for another key");
    }
    let value = &obj[HEADER_LEN..];
    let sum = u128::from_le_bytes(h[64..80].try_into().map_err(|_| "header")?);
    if sum != checksum(&h[..COVERED], value) {
        return Err("checksum mismatch (damaged)");
    }
    if let Some(k) = mac {
        if h[13] & FLAG_MAC == 0 {
            return Err("no MAC, and this reader has a secret");
        }
        // Constant-time comparison: blake3's Hash does it.
        let want = blake3::Hash::from_bytes(tag(k, &h[..COVERED], value));
        let got: [u8; 32] = h[80..112].try_into().map_err(|_| "header")?;
        if want != blake3::Hash::from_bytes(got) {
            return Err("MAC mismatch (written without this secret)");
        }
    }
    Ok(Checked {
        codec: h[12],
        cost_us: u64::from_le_bytes(word(&h[24..32])),
    })
}

fn word(b: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    w
}

/// xxh3-128 over the covered header and the value, as the local records'
/// checksums (it guards against damage; the MAC against forgery).
fn checksum(head: &[u8], value: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(head);
    h.update(value);
    h.digest128()
}

fn tag(k: &MacKey, head: &[u8], value: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(&k.0);
    h.update(head);
    h.update(value);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn object(key: &Key, value: &[u8], mac: Option<&MacKey>) -> Vec<u8> {
        let mut o = header(key, 3, 1234, value, mac).to_vec();
        o.extend_from_slice(value);
        o
    }

    #[test]
    fn a_written_object_checks() {
        let k = Key::of("k");
        let o = object(&k, b"value", None);
        assert_eq!(
            check(&k, &o, None),
            Ok(Checked {
                codec: 3,
                cost_us: 1234
            })
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let k = Key::of("k");
        let mac = MacKey::new(b"secret");
        let o = object(&k, b"some value bytes", Some(&mac));
        for i in 0..o.len() * 8 {
            let mut bad = o.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(check(&k, &bad, Some(&mac)).is_err(), "bit {i}");
        }
    }

    #[test]
    fn truncated_foreign_and_unsigned_objects_are_refused() {
        let k = Key::of("k");
        let mac = MacKey::new(b"secret");
        let o = object(&k, b"value", Some(&mac));
        for n in 0..o.len() {
            assert!(check(&k, &o[..n], Some(&mac)).is_err());
        }
        assert!(check(&Key::of("other"), &o, Some(&mac)).is_err());
        let unsigned = object(&k, b"value", None);
        assert!(check(&k, &unsigned, Some(&mac)).is_err());
        let other_secret = object(&k, b"value", Some(&MacKey::new(b"guess")));
        assert!(check(&k, &other_secret, Some(&mac)).is_err());
        // A reader without the secret still checks the checksum.
        assert!(check(&k, &o, None).is_ok());
    }
}
