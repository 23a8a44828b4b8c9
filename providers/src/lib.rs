//! Adapters behind small seams: typed storage keys, blob storage over object_store, the streaming
//! ingest pipeline with per-artifact inspectors, the hardened HTTP fetcher, the hardened archive
//! reader, and the OCI pieces (registry client, layer cache, flattener, docker-save loader, ext4
//! builder).

pub mod archive;
pub mod blob;
pub mod blobcache;
pub mod docker_archive;
pub mod ext4;
pub mod fetch;
pub mod flatten;
pub mod ingest;
pub mod kernel_store;
pub mod key;
pub mod oci;
pub mod registry;
pub mod rootfs;

pub use blob::{BlobRead, BlobStore, BlobWriter, S3Settings, StorageError, StoredObject};
pub use fetch::{ConnectFailure, Download, FetchError, FetchPolicy, Fetcher, Source};
pub use ingest::{IngestError, IngestLimits, Ingested, Inspector, RawDisk, UploadLedger, ingest};
pub use kernel_store::{StageError, StagedFile};
pub use key::BlobKey;
