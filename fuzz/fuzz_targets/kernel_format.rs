//! Arbitrary bytes as the head of a would-be vmlinux: detection and the architecture check must
//! never panic, and every refusal must map to one of the two 422 codes with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_domain::DomainError;
use strata_domain::image::Architecture;
use strata_domain::kernel_format::KernelFormat;

fuzz_target!(|data: &[u8]| {
    let detected = KernelFormat::detect(data);
    for arch in [Architecture::X86_64, Architecture::Aarch64] {
        match KernelFormat::validate(data, arch) {
            Ok(d) => {
                assert_eq!(Ok(d), detected, "validate agrees with detect");
                assert_eq!(d.machine.architecture(), Some(arch));
            }
            Err(e) => {
                let domain = DomainError::from(e);
                assert!(matches!(
                    domain.code(),
                    "unsupported-kernel-format" | "architecture-mismatch"
                ));
                assert!(!domain.to_string().is_empty());
            }
        }
    }
});
