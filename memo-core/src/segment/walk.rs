//! Walking a whole segment, record after record: what a rebuild, a
//! replay, compaction and `verify` do.

use std::path::Path;
use std::sync::Arc;

use super::{Read, check_record};
use crate::format::{self, INLINE_MAX, REC_HEADER_LEN, SEG_HEADER_LEN, record_size};
use crate::mmap::Region;

/// Calls `f` with every record of a segment in order, stopping at `limit`
/// (the append offset of the current segment: what lies past it is a
/// failed write's scratch) or at the first bytes that are not a record
/// header. Damaged records whose length is intact are passed as `Damaged`.
pub(crate) fn walk(
    region: &Arc<Region>,
    path: &Path,
    limit: Option<u64>,
    mut f: impl FnMut(u64, Read),
) -> u64 {
    region.refresh();
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut off = SEG_HEADER_LEN;
    while off < limit
        && let Some(h) = region
            .get(off, REC_HEADER_LEN)
            .and_then(format::decode_record_header)
    {
        if h.len as usize >= INLINE_MAX {
            f(
                off as u64,
                Read::Damaged(format!(
                    "{} at offset {off}: bad record length",
                    path.display()
                )),
            );
            break;
        }
        f(
            off as u64,
            check_record(region.clone(), off as u64, None, &|| path.to_path_buf()),
        );
        off += record_size(h.len as usize);
    }
    off as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::walk;
    use crate::segment::Read;
    use crate::segment::record::tests::{map, segment};

    #[test]
    fn every_record_in_order_and_damage_passed_on() {
        let (_t, path, offs) = segment(&[(1, b"a"), (2, b"bb"), (3, b"ccc")]);
        let mut seen = Vec::new();
        let end = walk(&map(&path), &path, None, |off, r| {
            seen.push((off, matches!(r, Read::Found(_))));
        });
        assert_eq!(seen, offs.iter().map(|&o| (o, true)).collect::<Vec<_>>());
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());
        // Stops at the limit: what lies past it is a failed write's scratch.
        let mut n = 0;
        walk(&map(&path), &path, Some(offs[1]), |_, _| n += 1);
        assert_eq!(n, 1);
        // A damaged record whose length is intact is passed as damage, and
        // the walk goes on past it.
        let mut b = std::fs::read(&path).unwrap();
        let at = usize::try_from(offs[1]).unwrap() + 48;
        b[at] ^= 1;
        std::fs::write(&path, b).unwrap();
        let mut kinds = Vec::new();
        walk(&map(&path), &path, None, |_, r| {
            kinds.push(matches!(r, Read::Found(_)));
        });
        assert_eq!(kinds, [true, false, true]);
    }
}
