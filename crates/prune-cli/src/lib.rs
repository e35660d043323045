//! The library side of the `prune` command: what can be used and tested without running
//! the binary. Today that is the pipeline's recipes ([`recipe`]).

pub mod recipe;
