//! Business operations. Each takes a tenancy value from `crate::tenancy`, so only callers that
//! passed the checks can reach tenant data, and each owns its rules; handlers only translate HTTP.

pub mod body;
pub mod consumers;
pub mod defaults;
pub mod docker;
pub mod download;
pub mod images;
pub mod imports;
pub mod jobs;
pub mod kernel_pull;
pub mod kernels;
pub mod oci;
pub mod query;
pub mod session;
pub mod sweeper;
