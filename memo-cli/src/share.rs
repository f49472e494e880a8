//! `push` and `pull`: copying entries to and from the remote tier.

use std::path::Path;

use clap::Args;
use memo_core::Transfer;
use serde_json::json;

use crate::open::{failed, open, open_or_create};
use crate::units::{count, entries, size};
use crate::{Failure, Outcome, out, print_json, progress};

#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, printed as written"
)]
#[derive(Args, Debug)]
pub(crate) struct RemoteArgs {
    /// The remote tier (redis://, s3://bucket/prefix, file:///path)
    /// [default: $MEMO_REMOTE]
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
}

fn transfer(
    dir: &Path,
    a: &RemoteArgs,
    json: bool,
    verb: &str,
    run: impl FnOnce(&memo_core::Store, &mut dyn FnMut(&Transfer)) -> memo_core::Result<Transfer>,
) -> Outcome {
    let with_remote = |b: memo_core::StoreBuilder| {
        let b = b.remote_from_env();
        match &a.remote {
            Some(url) => b.remote(url),
            None => b,
        }
    };
    // Pulling is how a new machine or CI runner gets its cache: a missing
    // or empty directory becomes a store. Push (like every other command)
    // opens only what already is one.
    let store = if verb == "pulled" {
        open_or_create(dir, with_remote)?
    } else {
        open(dir, with_remote)?
    };
    let bar = progress::bar(verb);
    let t = run(&store, &mut |t: &Transfer| {
        bar.set_length(t.total);
        bar.set_position(t.done);
    })
    .map_err(|e| match e {
        memo_core::Error::Remote { .. } | memo_core::Error::NoRemote { .. } => {
            Failure::Usage(e.to_string())
        }
        e => failed(dir, &e),
    })?;
    bar.finish_and_clear();
    if json {
        print_json(&json!({
            "total": t.total,
            "copied": t.copied,
            "present": t.present,
            "failed": t.failed,
            "bytes": t.bytes,
        }));
    } else {
        out!(
            "{verb}: {} copied ({}), {} already there, {} failed",
            entries(t.copied),
            size(t.bytes),
            count(t.present),
            count(t.failed)
        );
    }
    if t.failed > 0 {
        return Err(Failure::Found(format!(
            "{} entries could not be copied (the warnings above say why)",
            t.failed
        )));
    }
    Ok(())
}

pub(crate) fn push(dir: &Path, a: &RemoteArgs, json: bool) -> Outcome {
    transfer(dir, a, json, "pushed", |s, p| s.push(p))
}

pub(crate) fn pull(dir: &Path, a: &RemoteArgs, json: bool) -> Outcome {
    transfer(dir, a, json, "pulled", |s, p| s.pull(p))
}
