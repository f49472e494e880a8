//! The remote tier seen from the engine (`remote.rs` has the tier itself):
//! a local miss fetches from the remote and installs what it verified (in
//! the background, `install.rs`), a committed value is written through, and
//! a computation is announced with a lease so other machines wait for it.
//! The hit path never comes here.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::Engine;
use super::install::Waiting;
use crate::error::{Error, Result};
use crate::format::hdr;
use crate::remote::Remote;
use crate::{Bytes, Key, Transfer};

impl Engine {
    /// `key`'s bytes and codec: local, else fetched from the remote tier
    /// and installed in the local store (in the background: `install.rs`),
    /// so the next hit is local.
    /// Compressed values come back decompressed, as from `lookup`.
    pub(crate) fn find(&self, key: &Key, count: bool) -> Result<Option<(Bytes, u8)>> {
        if let Some(found) = self.lookup_stored(key, count)? {
            return Ok(super::read::unpacked(key, found.0, found.1));
        }
        match &self.remote {
            Some(r) => {
                let fetched = r.fetch(key);
                self.count_remote(fetched.is_some());
                Ok(fetched
                    .and_then(|f| self.take_fetched(key, f))
                    .and_then(|(bytes, codec)| super::read::unpacked(key, bytes, codec)))
            }
            None => Ok(None),
        }
    }

    /// Counts a remote lookup store-wide (`hdr::REMOTE_HITS`, `_MISSES`).
    pub(super) fn count_remote(&self, hit: bool) {
        if let Ok(idx) = self.index() {
            idx.bump(
                if hit {
                    hdr::REMOTE_HITS
                } else {
                    hdr::REMOTE_MISSES
                },
                1,
            );
        }
    }

    /// Installs a verified remote value as `key`'s local entry, unless the
    /// key has one by now; its bytes as now stored. A value the local store
    /// cannot take (too large for its limit, a full disk) is a miss,
    /// reported.
    pub(super) fn install_fetched(&self, key: &Key, value: &Waiting) -> Option<(Bytes, u8)> {
        self.install_now(key, value)?;
        match self.lookup_stored(key, false) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%key, error = %e, "memo: a value installed from the remote cannot be read back");
                None
            }
        }
    }

    /// Writes `key`'s committed entry through to the remote tier (in
    /// read-write mode); a failure is counted and reported, never returned.
    pub(crate) fn write_through(&self, key: &Key, cost: u32) {
        let Some(r) = &self.remote else { return };
        if !r.writes() {
            return;
        }
        match self.lookup_stored(key, false) {
            Ok(Some((bytes, codec))) => {
                if r.upload(key, codec, crate::format::cost_us(cost, 1), &bytes)
                    && let Ok(idx) = self.index()
                {
                    idx.bump(hdr::UPLOADS, 1);
                }
            }
            // Evicted or replaced already: nothing of ours to share.
            Ok(None) => {}
            Err(e) => {
                r.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%key, error = %e, "memo: a committed value cannot be read to upload it");
            }
        }
    }

    /// This process's remote counters, in a `Stats`.
    pub(super) fn remote_stats(&self) -> crate::Stats {
        let Some(r) = &self.remote else {
            return crate::Stats::default();
        };
        let c = &r.counters;
        crate::Stats {
            remote_hits: c.hits.load(Ordering::Relaxed),
            remote_misses: c.misses.load(Ordering::Relaxed),
            remote_errors: c.errors.load(Ordering::Relaxed),
            uploads: c.uploads.load(Ordering::Relaxed),
            ..crate::Stats::default()
        }
    }

    /// The remote tier, or the error a push or pull without one gets.
    fn remote_for(&self, op: &str) -> Result<&Remote> {
        self.remote.as_deref().ok_or_else(|| Error::NoRemote {
            dir: self.files.dir.clone(),
            op: op.to_owned(),
        })
    }

    /// Copies to the remote every local entry it lacks.
    pub(crate) fn push(&self, progress: &mut dyn FnMut(&Transfer)) -> Result<Transfer> {
        let r = self.remote_for("push")?;
        if !r.writes() {
            return Err(Error::Remote {
                url: r.url(),
                message:
                    "the remote is read-only here (MEMO_REMOTE_MODE=read); push needs read-write"
                        .into(),
            });
        }
        let there: HashSet<Key> = r.keys()?.into_iter().collect();
        let local = self.scan()?;
        let mut t = Transfer {
            total: local.len() as u64,
            ..Transfer::default()
        };
        for s in local {
            t.done += 1;
            if there.contains(&s.key) {
                t.present += 1;
            } else {
                match self.lookup_stored(&s.key, false) {
                    // Removed since the scan: nothing to copy.
                    Ok(None) => t.total -= 1,
                    Ok(Some((bytes, codec))) => match r.create(&s.key, codec, s.cost_us, &bytes) {
                        Some(true) => {
                            t.copied += 1;
                            t.bytes += bytes.len() as u64;
                        }
                        Some(false) => t.present += 1,
                        None => t.failed += 1,
                    },
                    Err(e) => {
                        tracing::warn!(key = %s.key, error = %e, "memo: an entry cannot be read to push it");
                        t.failed += 1;
                    }
                }
            }
            progress(&t);
        }
        Ok(t)
    }

    /// Copies from the remote every entry the local store lacks, each
    /// checked as a remote hit is.
    pub(crate) fn pull(&self, progress: &mut dyn FnMut(&Transfer)) -> Result<Transfer> {
        let r = self.remote_for("pull")?;
        let there = r.keys()?;
        let here: HashSet<Key> = self.scan()?.into_iter().map(|s| s.key).collect();
        let mut t = Transfer {
            total: there.len() as u64,
            ..Transfer::default()
        };
        for key in there {
            t.done += 1;
            if here.contains(&key) {
                t.present += 1;
            } else {
                match r
                    .fetch(&key)
                    .and_then(Waiting::of)
                    .and_then(|w| self.install_fetched(&key, &w))
                {
                    Some((bytes, _)) => {
                        t.copied += 1;
                        t.bytes += bytes.len() as u64;
                    }
                    None => t.failed += 1,
                }
            }
            progress(&t);
        }
        Ok(t)
    }

    /// The remote tier, if one is configured.
    pub(super) fn remote(&self) -> Option<&std::sync::Arc<Remote>> {
        self.remote.as_ref()
    }
}
