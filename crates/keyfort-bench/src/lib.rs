//! keyfort-bench: measuring Keyfort from outside its process.
//!
//! - [`run`]: one measured run of a [`workload`] over [`client`] connections, driven by
//!   [`drive`], with the server's CPU and memory from [`procfs`], reported by [`report`]
//!   with [`latency`] histograms.
//! - [`server`]: a Keyfort started for the benchmark against an offline sandbox, whose keys
//!   [`material`] reads.
//! - [`crypto`]: the signature operations alone; [`plot`]: charts of side-by-side results.

pub mod client;
pub mod crypto;
pub mod drive;
pub mod latency;
pub mod material;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod run;
pub mod server;
pub mod workload;
