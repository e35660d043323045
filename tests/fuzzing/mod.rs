//! A deterministic, seeded mutation fuzzer for the loaders, on stable Rust.
//!
//! Each target starts from valid seed inputs, mutates them (bit flips, byte insertion,
//! deletion and duplication, splicing, interesting integers and tokens, JSON-aware value and
//! key replacement), feeds each mutant to its loader and requires `Ok` or a one-line `Err`:
//! never a panic, never an allocation above [`alloc::MAX_ALLOCATION`]. A failure reports the
//! target, the iteration and the input (escaped, and saved under the test's temporary
//! directory, `fuzz-failures/`). A stack overflow aborts the whole run: the input being tried
//! is always in `fuzz-current/<target>.bin` there. Inputs a loader accepts join the pool
//! that later mutants start from.
//!
//! Run length: [`ITERATIONS`] mutants per target, or `PRUNE_FUZZ_SECONDS` of them when that
//! variable is set (a bounded CI run, best in release mode).

mod alloc;
mod mutate;

use alloc::watching;
use mutate::Mutator;
use prune::tensor::rng::mix64;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Mutants per target in a normal test run.
pub const ITERATIONS: usize = 150;

/// What became of one input.
enum Outcome {
    /// The loader accepted it.
    Accepted,
    /// The loader refused it with this message.
    Refused(String),
    /// The loader panicked with this message.
    Panicked(String),
    /// The loader asked for an allocation of this many bytes.
    Allocated(usize),
}

/// Feeds `input` to `target`, catching a panic and watching the allocator.
fn run_one(input: &[u8], target: &mut dyn FnMut(&[u8]) -> Result<(), String>) -> Outcome {
    let (result, refused) = watching(input, || catch_unwind(AssertUnwindSafe(|| target(input))));
    if let Some(size) = refused {
        return Outcome::Allocated(size);
    }
    match result {
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(msg)) => Outcome::Refused(msg),
        Err(payload) => Outcome::Panicked(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into()),
        ),
    }
}

/// Writes `input` to `<test temporary directory>/<dir>/<file>`; returns the path, or why
/// it could not be written.
fn save(dir: &str, file: &str, input: &[u8]) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let path = dir.join(file);
    // A new file each time: ext4 flushes a file rewritten in place when it is closed.
    let _ = std::fs::remove_file(&path);
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, input))
        .map_or_else(
            |e| format!("(not saved: {e})"),
            |_| path.display().to_string(),
        )
}

/// Fails the test for `input`: the escaped input in the message, the raw bytes in a file.
fn fail(name: &str, iteration: usize, input: &[u8], what: &str) -> ! {
    let saved = save("fuzz-failures", &format!("{name}-{iteration}.bin"), input);
    panic!(
        "fuzz target `{name}`, iteration {iteration}: {what}\ninput ({} bytes, saved as {saved}):\nb\"{}\"",
        input.len(),
        input.escape_ascii()
    );
}

/// How long a target runs.
fn budget() -> Option<Duration> {
    std::env::var("PRUNE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// Fuzzes `target` from `seeds`: every seed must be accepted, then mutants are fed to it
/// for the run length (see the module documentation). `target` returns `Err` with the
/// loader's message when the loader refuses an input.
pub fn fuzz(name: &str, seeds: Vec<Vec<u8>>, mut target: impl FnMut(&[u8]) -> Result<(), String>) {
    assert!(!seeds.is_empty(), "fuzz target `{name}` has no seeds");
    for (i, seed) in seeds.iter().enumerate() {
        if let Outcome::Refused(msg) = run_one(seed, &mut target) {
            fail(name, i, seed, &format!("a seed is refused: {msg}"));
        }
    }
    let seed = name.bytes().fold(0x5eed, |h, b| mix64(h ^ u64::from(b)));
    let mut mutator = Mutator::new(seed, seeds);
    let budget = budget();
    let start = Instant::now();
    let (mut accepted, mut iteration) = (0, 0);
    loop {
        let done = match budget {
            Some(limit) => start.elapsed() >= limit,
            None => iteration >= ITERATIONS,
        };
        if done {
            break;
        }
        let input = mutator.next_input();
        save("fuzz-current", &format!("{name}.bin"), &input);
        match run_one(&input, &mut target) {
            Outcome::Accepted => {
                accepted += 1;
                mutator.keep(input);
            }
            Outcome::Refused(msg) if msg.trim().is_empty() || msg.contains('\n') => fail(
                name,
                iteration,
                &input,
                &format!("the error is not one line: {msg:?}"),
            ),
            Outcome::Refused(_) => {}
            Outcome::Panicked(msg) => fail(name, iteration, &input, &format!("panic: {msg}")),
            Outcome::Allocated(size) => fail(
                name,
                iteration,
                &input,
                &format!("asked for an allocation of {size} bytes"),
            ),
        }
        iteration += 1;
    }
    eprintln!(
        "fuzz `{name}`: {iteration} inputs in {:.1} s, {accepted} accepted",
        start.elapsed().as_secs_f64()
    );
}
