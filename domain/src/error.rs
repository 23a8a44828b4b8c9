//! The one error type of the domain. It knows nothing about HTTP: the API crate maps each variant to a
//! status and a stable `error` code in exactly one place.

use std::fmt;

/// What kind of thing was not found; part of messages only, never used to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Image,
    Kernel,
    Region,
    Consumer,
    Route,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Image => "image",
            ResourceKind::Kernel => "kernel",
            ResourceKind::Region => "region",
            ResourceKind::Consumer => "consumer",
            ResourceKind::Route => "route",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("authentication required: {reason}")]
    Unauthenticated { reason: String },
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: ResourceKind, id: String },
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: String, reason: String },
    #[error("tag key {key:?} uses the reserved prefix {prefix:?}; these tags are set by the server only")]
    ReservedTag { key: String, prefix: &'static str },
    #[error("the name {name:?} is taken in this organization and region (or among global artifacts); choose another")]
    NameTaken { name: String },
    #[error("image is {actual}; this operation needs it to be {expected}")]
    InvalidState { actual: String, expected: String },
    #[error("quota exceeded: {detail}")]
    QuotaExceeded { detail: String },
    #[error("image is protected; set protected to false before deleting it")]
    ImageProtected,
    #[error("image is in use by {}: unregister them before deleting it", consumers.join(", "))]
    InUse { consumers: Vec<String> },
    #[error("the resource changed since it was read (revision {current}); fetch it again and retry")]
    PreconditionFailed { current: i64 },
    #[error(
        "unsupported disk format: {detected}; only raw disk images with an MBR or GPT partition table are accepted"
    )]
    UnsupportedDiskFormat { detected: String },
    /// A would-be kernel that is not an ELF vmlinux or x86 bzImage Strata can boot; `found` names
    /// what it is instead (e.g. "gzip data", "32-bit ELF for machine 40 (ARM)").
    #[error(
        "unsupported kernel format: {found}; a kernel must be an ELF vmlinux (x86_64 or aarch64) or an x86_64 bzImage"
    )]
    UnsupportedKernelFormat { found: String },
    /// A valid kernel built for another architecture than the one declared.
    #[error("architecture mismatch: the kernel is {found} but the declared architecture is {declared}")]
    ArchitectureMismatch { found: String, declared: String },
    /// An archive (kernel bundle, later OCI layers and docker archives) refused by the extractor;
    /// `reason` is short and for people, e.g. "entry \"../x\" leaves the archive".
    #[error("invalid archive: {reason}")]
    InvalidArchive { reason: String },
    #[error("URL not allowed: {reason}")]
    UrlNotAllowed { reason: String },
    #[error("fetching the source failed: {reason}")]
    FetchFailed { reason: String },
    /// An OCI image index without the platform asked for; `available` lists those it has.
    #[error("the platform {wanted} is not in the image index; it has: {}", available.join(", "))]
    PlatformNotFound { wanted: String, available: Vec<String> },
    #[error("checksum mismatch: expected sha256 {expected}, received {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("content exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("range not satisfiable for a resource of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("method not allowed here; use one of: {}", allowed.join(", "))]
    MethodNotAllowed { allowed: Vec<String> },
    #[error("unsupported media type {got:?}; send {expected}")]
    UnsupportedMediaType { got: String, expected: &'static str },
    #[error("request timed out: {reason}")]
    RequestTimeout { reason: String },
    #[error("another upload to this image is in progress; wait for it to end")]
    UploadInProgress,
    #[error("too many uploads in progress for this organization ({limit} at most); retry later")]
    TooManyUploads { limit: u64, retry_after_secs: u64 },
    /// An image names a kernel it may not use.
    #[error("invalid kernel: {reason}")]
    InvalidKernel { reason: String },
    /// A kernel is still referenced. `images` counts every referencing image; `visible_images`
    /// lists only those the caller may see.
    #[error("{}", kernel_in_use_message(*images, visible_images, consumers))]
    KernelInUse {
        images: u64,
        visible_images: Vec<String>,
        consumers: Vec<String>,
    },
    /// The request's header section is over a limit (total size or number of fields).
    #[error("request headers too large: {detail}")]
    HeadersTooLarge { detail: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: ResourceKind, id: impl fmt::Display) -> Self {
        DomainError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// The stable, kebab-case code clients branch on. Part of the API contract.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Unauthenticated { .. } => "unauthorized",
            DomainError::Forbidden { .. } => "forbidden",
            DomainError::NotFound { .. } => "not-found",
            DomainError::InvalidInput { .. } => "invalid-input",
            DomainError::ReservedTag { .. } => "reserved-tag",
            DomainError::NameTaken { .. } => "name-taken",
            DomainError::InvalidState { .. } => "invalid-state",
            DomainError::QuotaExceeded { .. } => "quota-exceeded",
            DomainError::ImageProtected => "image-protected",
            DomainError::InUse { .. } => "image-in-use",
            DomainError::PreconditionFailed { .. } => "precondition-failed",
            DomainError::UnsupportedDiskFormat { .. } => "unsupported-disk-format",
            DomainError::UnsupportedKernelFormat { .. } => "unsupported-kernel-format",
            DomainError::ArchitectureMismatch { .. } => "architecture-mismatch",
            DomainError::InvalidArchive { .. } => "invalid-archive",
            DomainError::UrlNotAllowed { .. } => "url-not-allowed",
            DomainError::FetchFailed { .. } => "fetch-failed",
            DomainError::PlatformNotFound { .. } => "platform-not-found",
            DomainError::ChecksumMismatch { .. } => "checksum-mismatch",
            DomainError::TooLarge { .. } => "too-large",
            DomainError::RangeNotSatisfiable { .. } => "range-not-satisfiable",
            DomainError::MethodNotAllowed { .. } => "method-not-allowed",
            DomainError::UnsupportedMediaType { .. } => "unsupported-media-type",
            DomainError::RequestTimeout { .. } => "request-timeout",
            DomainError::UploadInProgress => "upload-in-progress",
            DomainError::TooManyUploads { .. } => "too-many-uploads",
            DomainError::HeadersTooLarge { .. } => "headers-too-large",
            DomainError::InvalidKernel { .. } => "invalid-kernel",
            DomainError::KernelInUse { .. } => "kernel-in-use",
        }
    }
}

fn kernel_in_use_message(images: u64, visible: &[String], consumers: &[String]) -> String {
    let mut parts = Vec::new();
    if images > 0 {
        let mut p = format!("{images} image(s) reference it");
        if !visible.is_empty() {
            p.push_str(&format!(" (those visible to you: {})", visible.join(", ")));
        }
        parts.push(p);
    }
    if !consumers.is_empty() {
        parts.push(format!("consumers are registered: {}", consumers.join(", ")));
    }
    if parts.is_empty() {
        parts.push("it is referenced".into());
    }
    format!(
        "kernel is in use: {}; remove the references before deleting it",
        parts.join("; ")
    )
}

pub type DomainResult<T> = Result<T, DomainError>;
