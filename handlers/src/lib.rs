//! skald's binaries and the thin layer they share: reading release files, ids, output.
//!
//! Only this crate knows command-line flags and SQS and Lambda event JSON.

pub mod aws_env;
pub mod commands;
pub mod demo;
pub mod demo_endpoint;
pub mod lambda;
pub mod metrics;
pub mod progress;
pub mod release_file;
pub mod replay;
pub mod report;
pub mod timeline;
pub mod ulid;
pub mod worker;
