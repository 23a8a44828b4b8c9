//! Strata's domain: identifiers, names, tags, images, access rules, the disk-format inspector,
//! the kernel-format check, byte ranges and the query model. Pure: no HTTP, database, storage or
//! async runtime in here.

pub mod access;
pub mod command;
pub mod disk_format;
pub mod error;
pub mod ids;
pub mod image;
pub mod kernel;
pub mod kernel_format;
pub mod name;
pub mod netpolicy;
pub mod query;
pub mod range;
pub mod reference;
pub mod tags;

pub use error::{DomainError, DomainResult, ResourceKind};
