//! GLUE: where each task is published (the official archives, checked by size and sha256;
//! MRPC built from its sources), and fetching tasks into a `glue_data/`-style folder
//! (`<root>/SST-2/train.tsv`, …).

use crate::cache::cache_dir;
use crate::download::{Remote, download};
use crate::error::{FetchError, Result};
use crate::mrpc;
use crate::scratch::Scratch;
use crate::unzip::unpack_zip;
use std::path::{Path, PathBuf};

/// The environment variable naming a mirror of the GLUE files (`<mirror>/<file name>`).
pub const MIRROR_VAR: &str = "PRUNE_GLUE_MIRROR";

/// How a task's files are published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// One zip archive whose folder `folder` holds the task's files.
    Archive {
        /// The archive.
        zip: Remote<'a>,
        /// The folder inside the archive that becomes the task's folder.
        folder: &'a str,
    },
    /// MRPC: SentEval's MSR Paraphrase files and GLUE's dev ids, split as GLUE does.
    Mrpc {
        /// `msr_paraphrase_train.txt`: the pairs of train.tsv and dev.tsv.
        train: Remote<'a>,
        /// `msr_paraphrase_test.txt`: the pairs of test.tsv.
        test: Remote<'a>,
        /// `mrpc_dev_ids.tsv`: the id pairs that go to dev.tsv.
        dev_ids: Remote<'a>,
    },
}

/// A GLUE task as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlueTask<'a> {
    /// Its folder in the `glue_data/` layout (`SST-2`).
    pub dir: &'a str,
    /// The files that make the task usable: train and dev split(s).
    pub files: &'a [&'a str],
    /// Where its files come from.
    pub source: Source<'a>,
}

/// The train and dev files of every task but MNLI.
const TRAIN_DEV: &[&str] = &["train.tsv", "dev.tsv"];

/// A task published as one archive.
const fn archive(
    dir: &'static str,
    url: &'static str,
    size: u64,
    sha256: &'static str,
) -> GlueTask<'static> {
    GlueTask {
        dir,
        files: TRAIN_DEV,
        source: Source::Archive {
            zip: Remote { url, size, sha256 },
            folder: dir,
        },
    }
}

/// Every GLUE task in GLUE's order, with the official archives (sizes and sha256 as in the
/// TensorFlow Datasets checksum list).
pub const TASKS: [GlueTask<'static>; 9] = [
    archive(
        "CoLA",
        "https://dl.fbaipublicfiles.com/glue/data/CoLA.zip",
        376_971,
        "f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff",
    ),
    archive(
        "SST-2",
        "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
        7_439_277,
        "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
    ),
    GlueTask {
        dir: "MRPC",
        files: TRAIN_DEV,
        source: Source::Mrpc {
            train: Remote {
                url: "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt",
                size: 1_047_044,
                sha256: "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
            },
            test: Remote {
                url: "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt",
                size: 441_275,
                sha256: "a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
            },
            dev_ids: Remote {
                url: "https://dl.fbaipublicfiles.com/glue/data/mrpc_dev_ids.tsv",
                size: 6_222,
                sha256: "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7",
            },
        },
    },
    archive(
        "STS-B",
        "https://dl.fbaipublicfiles.com/glue/data/STS-B.zip",
        802_872,
        "e60a6393de5a8b5b9bac5020a1554b54e3691f9d600b775bd131e613ac179c85",
    ),
    archive(
        "QQP",
        "https://dl.fbaipublicfiles.com/glue/data/QQP.zip",
        60_534_884,
        "67cb8f5fe66c90a0bc1bf5792e3924f63008b064ab7a473736c919d20bb140ad",
    ),
    GlueTask {
        files: &["train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"],
        ..archive(
            "MNLI",
            "https://dl.fbaipublicfiles.com/glue/data/MNLI.zip",
            312_783_507,
            "e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633",
        )
    },
    archive(
        "QNLI",
        "https://dl.fbaipublicfiles.com/glue/data/QNLIv2.zip",
        10_627_589,
        "e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5",
    ),
    archive(
        "RTE",
        "https://dl.fbaipublicfiles.com/glue/data/RTE.zip",
        697_150,
        "6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee",
    ),
    archive(
        "WNLI",
        "https://dl.fbaipublicfiles.com/glue/data/WNLI.zip",
        28_999,
        "ae0e8e4d16f4d46d4a0a566ec7ecceccfd3fbfaa4a7a4b4e02848c0f2561ac46",
    ),
];

/// The task called `name`, spelt as the `prune` command spells tasks (`sst2`, `sts-b`) or as
/// its GLUE folder (`SST-2`): case, dashes and underscores do not matter.
pub fn task(name: &str) -> Result<&'static GlueTask<'static>> {
    let key = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .to_lowercase()
    };
    let wanted = key(name);
    TASKS
        .iter()
        .find(|t| key(t.dir) == wanted)
        .ok_or_else(|| FetchError::UnknownTask(name.to_string()))
}

/// Where fetched GLUE tasks go: `<cache>/glue`.
pub fn cache_root() -> Result<PathBuf> {
    Ok(cache_dir()?.join("glue"))
}

/// The mirror named by `$PRUNE_GLUE_MIRROR`, if set and not empty.
fn mirror_from_env() -> Option<String> {
    std::env::var(MIRROR_VAR).ok().filter(|v| !v.is_empty())
}

impl<'a> GlueTask<'a> {
    /// Whether `<root>/<dir>` holds the task's train and dev files.
    pub fn is_present(&self, root: &Path) -> bool {
        self.files
            .iter()
            .all(|f| root.join(self.dir).join(f).is_file())
    }

    /// The files to download.
    pub fn remotes(&self) -> Vec<Remote<'a>> {
        match self.source {
            Source::Archive { zip, .. } => vec![zip],
            Source::Mrpc {
                train,
                test,
                dev_ids,
            } => vec![train, test, dev_ids],
        }
    }
}

/// Puts each of `tasks` into `<root>/<dir>/` and returns those folders. A task already there
/// (its train and dev files present) is left alone; any other is downloaded, checked against
/// its size and sha256, and unpacked (MRPC: built) into a temporary folder renamed into place
/// when complete. Files come from `mirror` (`<mirror>/<file name>`) when given, else from
/// `$PRUNE_GLUE_MIRROR` when set, else from the official hosts; a line on stderr announces
/// each download.
pub fn fetch_glue(
    tasks: &[&GlueTask<'_>],
    root: &Path,
    mirror: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let mirror = mirror.map(str::to_string).or_else(mirror_from_env);
    tasks
        .iter()
        .map(|task| fetch_task(task, root, mirror.as_deref()))
        .collect()
}

/// Fetches one task into `<root>/<dir>/` unless it is there already.
fn fetch_task(task: &GlueTask<'_>, root: &Path, mirror: Option<&str>) -> Result<PathBuf> {
    let dest = root.join(task.dir);
    if task.is_present(root) {
        return Ok(dest);
    }
    let downloads = Scratch::dir_beside(&dest, "download")?;
    let local = |remote: &Remote<'_>| downloads.path().join(remote.file_name());
    for remote in task.remotes() {
        let url = remote.url_on(mirror);
        eprintln!(
            "downloading GLUE {}: {url} ({})",
            task.dir,
            human_size(remote.size)
        );
        download(
            &Remote {
                url: &url,
                ..remote
            },
            &local(&remote),
        )?;
    }
    match task.source {
        Source::Archive { zip, folder } => unpack_zip(&local(&zip), folder, &dest, task.files)?,
        Source::Mrpc {
            train,
            test,
            dev_ids,
        } => {
            let staging = Scratch::dir_beside(&dest, "build")?;
            mrpc::build(
                &local(&train),
                &local(&test),
                &local(&dev_ids),
                staging.path(),
            )?;
            staging.finish(&dest)?;
        }
    }
    eprintln!("GLUE {} is in {}", task.dir, dest.display());
    Ok(dest)
}

/// `bytes` in MiB, or KiB below one MiB.
fn human_size(bytes: u64) -> String {
    const MIB: f64 = (1 << 20) as f64;
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    }
}
