//! paysay: a WeChat Pay payment speaker.
//!
//! The data flows one way: `session` (WeChat web, owns cookies and keys) → `protocol`
//! messages → `payment` (pure detection) → `ledger` (what was detected and announced) →
//! `speech` (text → audio clip, cached) → `audio` (one thread owns the device). `daemon`
//! wires the stages together; `simulator` is a second implementation of the server side.

pub mod audio;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod ledger;
pub mod paths;
pub mod payment;
pub mod protocol;
pub mod service;
pub mod session;
pub mod simulator;
pub mod speech;
