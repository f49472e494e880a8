//! `#[track]` helpers: their code, and the helpers they use, go into the
//! keys of the functions that name them in `uses(...)`.

/// A `#[track]` helper: its path, its code's canonical text, and the
/// tracked helpers it uses. A `static` in the expansion of `#[track]`.
pub struct Track {
    /// `module_path!()::name`.
    pub name: &'static str,
    /// The helper's tokens in the macro's canonical text form.
    pub tokens: &'static str,
    /// `#[track(uses(...))]`.
    pub uses: &'static [fn() -> &'static Track],
}

/// Implemented by `#[track]` for the empty enum it names after the helper,
/// which `uses(helper)` names.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a #[memo_core::track] function",
    label = "`uses` names functions marked #[memo_core::track]",
    note = "put #[memo_core::track] on the helper, so its code goes into the keys of the functions that use it"
)]
pub trait Tracked {
    /// The helper's record.
    fn track() -> &'static Track;
}

/// The digest of every helper `uses` reaches (each once, in name order, so
/// neither the order of `uses` nor cycles among helpers matter).
pub(crate) fn helpers_digest(uses: &[fn() -> &'static Track]) -> [u8; 32] {
    let mut seen = std::collections::BTreeMap::new();
    let mut todo: Vec<&'static Track> = uses.iter().map(|f| f()).collect();
    while let Some(t) = todo.pop() {
        if seen.insert(t.name, t.tokens).is_none() {
            todo.extend(t.uses.iter().map(|f| f()));
        }
    }
    let mut h = blake3::Hasher::new_derive_key("memo 2026-12 #[track] helpers v1");
    for (name, tokens) in seen {
        for part in [name, tokens] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    *h.finalize().as_bytes()
}
