//! Switchyard backend: Open Inference Protocol (KServe V2) serving with dynamic batching on
//! libtorch. The binary (`main.rs`, its command line in `cli.rs`) wires these together.

pub mod admission;
pub mod batcher;
pub mod bench;
pub mod config;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod grpc;
pub mod metrics;
pub mod models;
pub mod offline;
pub mod serve;
pub mod server;
pub mod service;
pub mod tensor;
#[cfg(test)]
mod testing;
pub mod torch;
pub mod v2;
