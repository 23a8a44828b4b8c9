//! Strata's HTTP service: routes, tenancy extractors, the error edge, persistence and the
//! `strata` binary's building blocks.

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod fdlimit;
pub mod keepalive;
pub mod kernel_model;
pub mod metrics;
pub mod middleware;
pub mod model;
pub mod openapi;
mod routes;
pub mod service;
pub mod state;
pub mod tenancy;

pub use app::Application;
pub use config::{Config, Overrides};
