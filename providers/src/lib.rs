//! Adapters behind small seams: blob storage over object_store and the streaming ingest pipeline.
//! Later: the hardened HTTP fetcher, OCI pulls, archive readers.

pub mod archive;
pub mod blob;
pub mod fetch;
pub mod ingest;
pub mod kernel_store;

pub use blob::{BlobRead, BlobStore, BlobWriter, S3Settings, StorageError, StoredObject};
pub use fetch::{ConnectFailure, Download, FetchError, FetchPolicy, Fetcher, Source};
pub use ingest::{IngestError, IngestLimits, Ingested, UploadLedger, ingest};
pub use kernel_store::{StageError, StagedFile};
