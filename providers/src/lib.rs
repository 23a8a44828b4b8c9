//! Adapters behind small seams: typed storage keys, blob storage over object_store, the streaming
//! ingest pipeline with per-artifact inspectors, and the hardened HTTP fetcher.

pub mod archive;
pub mod blob;
pub mod fetch;
pub mod ingest;
pub mod kernel_store;
pub mod key;

pub use blob::{BlobRead, BlobStore, BlobWriter, S3Settings, StorageError, StoredObject};
pub use fetch::{ConnectFailure, Download, FetchError, FetchPolicy, Fetcher, Source};
pub use ingest::{IngestError, IngestLimits, Ingested, Inspector, RawDisk, UploadLedger, ingest};
pub use kernel_store::{StageError, StagedFile};
pub use key::BlobKey;
