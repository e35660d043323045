//! Output folders of runs. A run never writes into a folder it did not create and never
//! touches its inputs:
//!
//! - `--out DIR` must not overlap any input (be it, contain it or lie inside it) and must
//!   not already hold anything: a finished run's output is never overwritten;
//! - the run works in `DIR.partial`, locked for as long as it runs, so a second run on the
//!   same `--out` fails at once instead of interleaving its files with the first;
//! - `DIR.partial/run.json` records what the run is ([`RunIdentity`]: the settings and a
//!   hash of every input that decides its result); a resumed run must be the same run;
//! - when the run is complete the folder is renamed to `DIR`, so `DIR` only ever holds
//!   finished artefacts. A killed run leaves `DIR.partial`, which `resume` continues.

use crate::error::{Result, TrainError};
use prune_transformer::weights::weights_file;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The file in a run folder that records what the run is.
pub const RUN_FILE: &str = "run.json";

/// What a run is: its command and every setting and input hash that decides its result
/// (not where it writes, how often it logs, or on which device it runs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The command, e.g. `finetune`.
    pub command: String,
    /// Settings and input hashes by name.
    pub settings: BTreeMap<String, Value>,
}

impl RunIdentity {
    /// An identity of `command` with no settings yet.
    pub fn new(command: &str) -> Self {
        RunIdentity {
            command: command.to_string(),
            settings: BTreeMap::new(),
        }
    }

    /// Adds the setting `key`.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.settings.insert(key.to_string(), value);
        self
    }

    /// Adds every field of `settings` (a struct serialising to a JSON object), each under
    /// `<prefix>.<field>`.
    pub fn with_fields(mut self, prefix: &str, settings: &impl Serialize) -> Self {
        if let Ok(Value::Object(fields)) = serde_json::to_value(settings) {
            for (k, v) in fields {
                self.settings.insert(format!("{prefix}.{k}"), v);
            }
        }
        self
    }

    /// Adds the sha256 of the file at `path` as `key` (a missing file is an error naming it).
    pub fn with_file(self, key: &str, path: &Path) -> Result<Self> {
        let digest = sha256_file(path)?;
        Ok(self.with(key, digest))
    }

    /// Adds the sha256 of a checkpoint's `config.json` and weights file as `key`.
    pub fn with_checkpoint(self, key: &str, dir: &Path) -> Result<Self> {
        let config = sha256_file(&dir.join("config.json"))?;
        let weights = sha256_file(&weights_file(dir)?)?;
        Ok(self.with(key, format!("config {config}, weights {weights}")))
    }

    /// What differs from `earlier`, one phrase per setting (empty when they are the same).
    pub fn differences(&self, earlier: &RunIdentity) -> Vec<String> {
        let mut out = Vec::new();
        if self.command != earlier.command {
            out.push(format!(
                "command `{}` (now `{}`)",
                earlier.command, self.command
            ));
            return out;
        }
        let keys: std::collections::BTreeSet<&String> = self
            .settings
            .keys()
            .chain(earlier.settings.keys())
            .collect();
        for k in keys {
            let (was, now) = (earlier.settings.get(k), self.settings.get(k));
            if was != now {
                let show = |v: Option<&Value>| v.map_or("unset".to_string(), Value::to_string);
                out.push(format!("{k} was {}, now {}", show(was), show(now)));
            }
        }
        out
    }
}

/// The sha256 of a file's contents, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| TrainError::file(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| TrainError::file(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `path` made absolute, with symbolic links resolved as far as it exists and `.` / `..`
/// resolved in the part that does not exist yet.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|e| TrainError::file(path, e))?;
    // `..` steps up from where the path so far really is (a link's target, when it exists).
    let mut lexical = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if let Ok(real) = lexical.canonicalize() {
                    lexical = real;
                }
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    out.extend(rest.iter().rev());
    Ok(out)
}

/// Fails unless `out` is apart from every input: not the same folder, not inside one and
/// not containing one. `inputs` are `(what, path)` pairs, e.g. `("--model", dir)`.
pub fn check_apart(out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let o = resolve(out)?;
    for (what, input) in inputs {
        let i = resolve(input)?;
        let relation = if o == i {
            "is"
        } else if o.starts_with(&i) {
            "lies inside"
        } else if i.starts_with(&o) {
            "contains"
        } else {
            continue;
        };
        return Err(TrainError::Output(format!(
            "the output folder {} {relation} the input {what} {}: choose an output folder \
             apart from every input",
            out.display(),
            input.display()
        )));
    }
    Ok(())
}

/// The work folder of a run writing `out`: `<out>.partial` beside it.
pub fn work_dir_of(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "out".into());
    name.push(".partial");
    out.with_file_name(name)
}

/// Whether `dir` is a folder with nothing in it.
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Takes an exclusive lock on `file` without waiting: `false` when another process holds
/// it. The lock lasts as long as the file stays open, and ends with the process.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Elsewhere no lock is taken: two runs on one output folder are not detected.
#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

/// A run's claim on its output folder: the locked work folder, renamed into place by
/// [`RunDir::commit`]. Dropped without committing (the run failed), a work folder this run
/// created is removed again unless it holds something `resume` continues from: a training
/// checkpoint, or the folder of a run inside it.
#[derive(Debug)]
pub struct RunDir {
    out: PathBuf,
    work: PathBuf,
    created: bool,
    committed: bool,
    _lock: File,
}

impl RunDir {
    /// Claims `out` for the run `identity` reading `inputs`. With `resume`, an interrupted
    /// run's work folder is continued when its identity is the same (a fresh one is
    /// started when there is none); without, an existing work folder is an error.
    pub fn claim(
        out: &Path,
        inputs: &[(&str, &Path)],
        identity: &RunIdentity,
        resume: bool,
    ) -> Result<RunDir> {
        let work = work_dir_of(out);
        check_apart(out, inputs)?;
        check_apart(&work, inputs)?;
        if out.exists() && !is_empty_dir(out) {
            return Err(TrainError::Output(format!(
                "{} already exists: a finished run's output is never overwritten; choose \
                 another output folder or delete that one",
                out.display()
            )));
        }
        let cannot_create = |p: &Path, e| TrainError::file(p, format!("cannot create: {e}"));
        if let Some(parent) = work.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| cannot_create(parent, e))?;
        }
        let created = match std::fs::create_dir(&work) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(cannot_create(&work, e)),
        };
        let lock = File::open(&work).map_err(|e| TrainError::file(&work, e))?;
        if !try_lock(&lock).map_err(|e| TrainError::file(&work, e))? {
            return Err(TrainError::Output(format!(
                "another run is writing {} (its work folder {} is locked)",
                out.display(),
                work.display()
            )));
        }
        let dir = RunDir {
            out: out.to_path_buf(),
            work,
            created,
            committed: false,
            _lock: lock,
        };
        let record = dir.work.join(RUN_FILE);
        if created {
            crate::state::write_json(&record, identity)?;
            return Ok(dir);
        }
        let earlier: RunIdentity = std::fs::read_to_string(&record)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| {
                TrainError::Output(format!(
                    "{} exists but is not a prune run folder (no readable {RUN_FILE}); \
                     delete it or choose another output folder",
                    dir.work.display()
                ))
            })?;
        if !resume {
            return Err(TrainError::Output(format!(
                "{} holds an interrupted run of `prune {}`: pass --resume to continue it, or \
                 delete that folder to start over",
                dir.work.display(),
                earlier.command
            )));
        }
        let diff = identity.differences(&earlier);
        if !diff.is_empty() {
            return Err(TrainError::Output(format!(
                "cannot resume {}: it is a different run ({}); resume with the same inputs \
                 and settings, or delete that folder to start over",
                dir.work.display(),
                diff.join("; ")
            )));
        }
        Ok(dir)
    }

    /// The folder the run writes into (the work folder until committed).
    pub fn path(&self) -> &Path {
        &self.work
    }

    /// The folder the run's artefacts end up in.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Whether this run started the work folder (rather than resuming one).
    pub fn is_fresh(&self) -> bool {
        self.created
    }

    /// The run is complete: renames the work folder to the output folder, which is
    /// returned.
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.out.exists() && is_empty_dir(&self.out) {
            std::fs::remove_dir(&self.out).map_err(|e| TrainError::file(&self.out, e))?;
        }
        std::fs::rename(&self.work, &self.out).map_err(|e| TrainError::file(&self.out, e))?;
        self.committed = true;
        Ok(self.out.clone())
    }
}

/// Whether a work folder holds something a resumed run continues from: a training
/// checkpoint, or the folder of a run inside it (a pipeline's stage, finished or kept
/// because it was interrupted after a checkpoint).
fn worth_keeping(work: &Path) -> bool {
    if work.join("checkpoints").join("latest").exists() {
        return true;
    }
    std::fs::read_dir(work)
        .is_ok_and(|entries| entries.flatten().any(|e| e.path().join(RUN_FILE).is_file()))
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.created && !self.committed && !worth_keeping(&self.work) {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("prune-run-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn outputs_overlapping_an_input_are_refused() {
        let root = scratch("apart");
        let model = root.join("runs/teacher/model");
        std::fs::create_dir_all(&model).unwrap();
        let inputs = [("--model", model.as_path())];
        for (out, relation) in [
            (root.join("runs/teacher"), "contains"),
            (model.clone(), "is"),
            (model.join("sub"), "lies inside"),
            (root.join("runs/teacher/./x/../model"), "is"),
        ] {
            let e = check_apart(&out, &inputs).unwrap_err().to_string();
            assert!(e.contains(relation), "{out:?}: {e}");
        }
        check_apart(&root.join("runs/other"), &inputs).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_run_owns_its_folder_until_committed() {
        let root = scratch("claim");
        let out = root.join("out");
        let id = RunIdentity::new("finetune").with("batch_size", 32);
        let first = RunDir::claim(&out, &[], &id, false).unwrap();
        assert!(first.path().ends_with("out.partial"));
        let second = RunDir::claim(&out, &[], &id, true).unwrap_err().to_string();
        assert!(second.contains("another run is writing"), "{second}");
        std::fs::write(first.path().join("a.txt"), "x").unwrap();
        assert_eq!(first.commit().unwrap(), out);
        assert!(out.join("a.txt").is_file() && out.join(RUN_FILE).is_file());
        let again = RunDir::claim(&out, &[], &id, false)
            .unwrap_err()
            .to_string();
        assert!(again.contains("already exists"), "{again}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn resuming_checks_the_identity_and_early_failures_leave_nothing() {
        let root = scratch("resume");
        let out = root.join("out");
        let id = RunIdentity::new("finetune").with("batch_size", 32);
        {
            let _dropped = RunDir::claim(&out, &[], &id, false).unwrap();
        }
        assert!(
            !work_dir_of(&out).exists(),
            "no checkpoint: nothing is left"
        );
        let pipeline = root.join("pipeline");
        {
            let run = RunDir::claim(&pipeline, &[], &id, false).unwrap();
            std::fs::create_dir_all(run.path().join("finetune")).unwrap();
            std::fs::write(run.path().join("finetune").join(RUN_FILE), "{}").unwrap();
        }
        assert!(
            work_dir_of(&pipeline).exists(),
            "a finished stage inside is kept"
        );
        {
            let run = RunDir::claim(&out, &[], &id, false).unwrap();
            std::fs::create_dir_all(run.path().join("checkpoints")).unwrap();
            std::fs::write(run.path().join("checkpoints/latest"), "step-3").unwrap();
        }
        let plain = RunDir::claim(&out, &[], &id, false)
            .unwrap_err()
            .to_string();
        assert!(plain.contains("pass --resume"), "{plain}");
        let other = RunIdentity::new("finetune").with("batch_size", 16);
        let e = RunDir::claim(&out, &[], &other, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch_size was 32, now 16"), "{e}");
        let resumed = RunDir::claim(&out, &[], &id, true).unwrap();
        assert!(!resumed.is_fresh());
        resumed.commit().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
