//! Strata's integration suite: the real application on port 0, real SQLite and PostgreSQL, real
//! HTTP. Every test body runs on both databases (see `both!`).
#![allow(clippy::unwrap_used)]

mod harness;

mod auth;
mod availability;
mod cli;
mod console;
mod consumers;
mod docker_archive;
mod docker_cli;
mod files;
mod hostile;
mod images;
mod imports;
mod jobs;
mod kernel_pulls;
mod kernels;
mod metrics;
mod oci_client;
mod oci_import;
mod oci_pull;
mod openapi_spec;
mod plans;
mod query;
mod quotas;
mod registry;
mod replicas;
mod spec_check;
mod sweeper;
mod terraform;
mod upstream;
