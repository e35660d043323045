//! PyPI wheels installed once into a folder of the cache (`pip install --target`), for the
//! checks that need what only a wheel ships (NVRTC, ONNX Runtime).

use crate::fetch::find_pip;
use anyhow::{Context, Result, bail};
use prune_fetch::cache_dir;
use std::path::{Path, PathBuf};

/// A set of pinned wheels and the folder of the cache they go to.
pub struct Wheels<'a> {
    /// The folder under the cache, e.g. `nvrtc`.
    pub folder: &'a str,
    /// The pinned requirements, e.g. `onnxruntime==1.23.2`.
    pub packages: &'a [&'a str],
    /// Install the packages only, not their dependencies.
    pub no_deps: bool,
    /// A file (relative to the folder) that exists once they are installed.
    pub marker: &'a str,
}

impl Wheels<'_> {
    /// The folder holding the installed wheels, installing them when `marker` is missing.
    pub fn installed(&self) -> Result<PathBuf> {
        let target = cache_dir()?.join(self.folder);
        let ready = |t: &Path| t.join(self.marker).is_file();
        if ready(&target) {
            return Ok(target);
        }
        let wanted = self.packages.join(" ");
        let Some(mut pip) = find_pip() else {
            bail!(
                "installing {wanted} needs pip (no `python3 -m pip` or `pip3` here); install pip"
            );
        };
        eprintln!("installing {wanted} into {}", target.display());
        pip.args(["install", "--quiet", "--upgrade", "--target"])
            .arg(&target);
        if self.no_deps {
            pip.arg("--no-deps");
        }
        let status = pip
            .args(self.packages)
            .status()
            .context("could not run pip")?;
        if !status.success() || !ready(&target) {
            bail!(
                "pip could not install {wanted} into {} ({status})",
                target.display()
            );
        }
        Ok(target)
    }
}
