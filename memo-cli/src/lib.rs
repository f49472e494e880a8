//! `memo`: see, check, prune and share a memo cache from the shell (the
//! binary is `src/main.rs`; the Python package runs the same [`run`]).
//!
//! Every command works on one store directory: `--dir`, else `$MEMO_DIR`,
//! else the project's `.memo` (`Store::default_dir`). It opens the store only if it already is one (a
//! mistyped path is an error, never a new empty store), and the reading
//! commands (`stats`, `functions`, `verify`) change nothing in it. The
//! storage logic is memo-core's: this crate parses, calls and prints.
//!
//! Exit status: 0 on success; 1 when `verify` finds damage, a transfer
//! fails in part, or `clear` is refused; 2 for a directory that is
//! missing, not a store, of a future format or unreadable, and for bad
//! arguments (one line on stderr naming the directory or argument).

mod inspect;
pub mod json;
mod open;
mod progress;
mod prune;
mod share;
mod units;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// See, check, prune and share a memo cache.
#[allow(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, printed as written"
)]
#[derive(Parser, Debug)]
#[command(name = "memo", version, about, long_about = None)]
struct Cli {
    /// The store directory [default: $MEMO_DIR, else the nearest .memo store up to the project root, else ./.memo]
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Entries, bytes, hits, misses, evictions and the compute time saved
    Stats,
    /// One row per memoized function: entries, bytes, hits, misses, compute
    /// stored and saved, stale entries, last use
    Functions,
    /// Check every checksum and structure; exit status 1 on damage
    Verify,
    /// Evict and compact down to the given limits now
    Trim(prune::TrimArgs),
    /// Remove entries: all of them, or those the options select
    Clear(prune::ClearArgs),
    /// Copy to the remote tier the entries it lacks
    Push(share::RemoteArgs),
    /// Copy from the remote tier the entries this store lacks
    Pull(share::RemoteArgs),
}

/// How a command ended, beyond success.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The store could not be opened, or an argument is bad: exit 2.
    Usage(String),
    /// The command ran and found a problem, or was refused: exit 1.
    Found(String),
}

pub(crate) type Outcome = Result<(), Failure>;

/// Runs the command line `args` (the program's name first) as the `memo`
/// command does, printing to stdout and stderr; returns the exit status.
/// The Python package's `memo` command calls this.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and
            // exit 0; a bad argument prints to stderr and exits 2.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    // memo-core reports problems through `tracing`: warnings (a damaged
    // entry, a remote that failed) reach the user on stderr; RUST_LOG
    // shows more (`RUST_LOG=memo_core=debug`).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second run in one process (Python calling `run` twice) keeps the
    // subscriber the first one set.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
    let dir = open::store_dir(cli.dir.as_deref());
    let out = match &cli.command {
        Command::Stats => inspect::stats(&dir, cli.json),
        Command::Functions => inspect::functions(&dir, cli.json),
        Command::Verify => inspect::verify(&dir, cli.json),
        Command::Trim(a) => prune::trim(&dir, a, cli.json),
        Command::Clear(a) => prune::clear(&dir, a, cli.json),
        Command::Push(a) => share::push(&dir, a, cli.json),
        Command::Pull(a) => share::pull(&dir, a, cli.json),
    };
    let (msg, code) = match out {
        Ok(()) => return 0,
        Err(Failure::Found(msg)) => (msg, 1),
        Err(Failure::Usage(msg)) => (msg, 2),
    };
    if !msg.is_empty() {
        eprintln!("memo: {msg}");
        // With --json every answer is JSON, refusals and errors included
        // (a command that already printed its document says nothing here).
        if cli.json {
            print_json(&serde_json::json!({ "error": msg, "exit_code": code }));
        }
    }
    code
}

/// Prints `value` as the command's one JSON document.
pub(crate) fn print_json(value: &serde_json::Value) {
    // A serde_json::Value always serializes.
    say(format_args!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ));
}

/// Prints one line of the command's output on stdout. A reader that went
/// away (`memo stats | head -1`) ends the command quietly with success, as
/// Unix tools do; Rust ignores SIGPIPE, so `println!` would panic there.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("memo: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for the command's output, through [`say`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::say(format_args!($($arg)*)) };
}
pub(crate) use out;
