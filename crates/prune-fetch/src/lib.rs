//! Verified downloads into prune's cache, with no dependency on the other prune crates:
//!
//! - [`cache_dir`]: the one definition of the cache folder;
//! - [`download`]: an HTTP(S) GET streamed to a temporary file while hashing, checked against
//!   the expected size and sha256, then renamed into place;
//! - [`unpack_zip`]: a zip archive unpacked into a temporary sibling folder and renamed into
//!   place when complete, refusing absolute paths, `..` and symbolic links;
//! - [`Scratch`]: a temporary file or folder beside its destination, removed unless moved
//!   into place (what makes the above atomic);
//! - [`glue`]: where each GLUE task is published, and [`fetch_glue`] to put tasks into a
//!   `glue_data/`-style folder.
//!
//! A failure to reach a server is a [`FetchError::NoNetwork`] ([`FetchError::is_no_network`]),
//! so a caller can offer a local alternative.

mod cache;
mod download;
mod error;
pub mod glue;
mod mrpc;
mod scratch;
mod unzip;

pub use cache::cache_dir;
pub use download::{Remote, download, sha256_file};
pub use error::{FetchError, Result};
pub use glue::{GlueTask, fetch_glue};
pub use scratch::Scratch;
pub use unzip::unpack_zip;
