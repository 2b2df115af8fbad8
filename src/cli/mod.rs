//! The subcommands of the `deltasync` binary, one module each. Each owns its options
//! (clap derive) and a `run` returning the process's exit code; they use only the
//! library's public API.

pub(crate) mod bench;
pub(crate) mod config;
pub(crate) mod conformance;
pub(crate) mod nofile;
pub(crate) mod serve;
pub(crate) mod soak;
