//! Strata's integration suite: the real application on port 0, real SQLite and PostgreSQL, real
//! HTTP. Every test body runs on both databases (see `both!`).
#![allow(clippy::unwrap_used)]

mod harness;

mod auth;
mod availability;
mod cli;
mod consumers;
mod files;
mod hostile;
mod images;
mod imports;
mod kernels;
mod metrics;
mod openapi_spec;
mod query;
mod quotas;
mod replicas;
mod spec_check;
mod sweeper;
mod terraform;
mod upstream;
