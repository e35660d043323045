//! `cargo xtask`: project automation (placeholder until the tasks land).
fn main() {}
