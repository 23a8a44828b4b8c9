//! The disk-format inspector: classifies the first bytes of an image and accepts only a raw disk
//! with a sane MBR (or a protective MBR followed by a GPT header). It names the formats people
//! commonly upload by mistake so the error tells them what to convert.
//!
//! Pure function over a byte prefix: the upload path, URL imports (a 512-byte peek, then the first
//! 64 KiB again while copying) and later importers all call the same code.

use std::fmt;

/// How many leading bytes the inspector looks at when it has them. ISO 9660 volume descriptors
/// live at 32 KiB, so anything shorter would miss hybrid ISOs.
pub const INSPECT_LEN: usize = 64 * 1024;
pub const SECTOR: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTable {
    Mbr,
    Gpt,
}

/// A format the inspector recognised and refuses, or the reason a would-be raw disk is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    Qcow2,
    Vmdk,
    Vhd,
    Vhdx,
    Vdi,
    Qed,
    Luks,
    Iso9660,
    FatBootSector,
    NtfsBootSector,
    TooShort { len: usize },
    NoBootSignature,
    BadPartitionTable(String),
    GptHeaderMissing,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Qcow2 => f.write_str("qcow2"),
            Rejected::Vmdk => f.write_str("vmdk"),
            Rejected::Vhd => f.write_str("vhd"),
            Rejected::Vhdx => f.write_str("vhdx"),
            Rejected::Vdi => f.write_str("vdi"),
            Rejected::Qed => f.write_str("qed"),
            Rejected::Luks => f.write_str("luks"),
            Rejected::Iso9660 => f.write_str("iso9660"),
            Rejected::FatBootSector => f.write_str("fat filesystem (a partition, not a whole disk)"),
            Rejected::NtfsBootSector => f.write_str("ntfs filesystem (a partition, not a whole disk)"),
            Rejected::TooShort { len } => write!(f, "unknown (only {len} bytes; a raw disk has at least 512)"),
            Rejected::NoBootSignature => f.write_str("unknown (no MBR boot signature 0x55AA at offset 510)"),
            Rejected::BadPartitionTable(why) => write!(f, "unknown (invalid MBR partition table: {why})"),
            Rejected::GptHeaderMissing => f.write_str("unknown (protective MBR for GPT, but no GPT header follows)"),
        }
    }
}

/// Classifies `head`, the first bytes of an image (up to [`INSPECT_LEN`]; fewer only if the image
/// is that short). Pass at least [`SECTOR`] bytes for a useful answer.
pub fn inspect(head: &[u8]) -> Result<PartitionTable, Rejected> {
    if let Some(r) = named_format_at_start(head) {
        return Err(r);
    }
    if let Some(r) = named_format_later(head) {
        return Err(r);
    }
    if head.len() < SECTOR {
        return Err(Rejected::TooShort { len: head.len() });
    }
    let mbr = &head[..SECTOR];
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Err(Rejected::NoBootSignature);
    }
    if &mbr[3..11] == b"NTFS    " {
        return Err(Rejected::NtfsBootSector);
    }
    if &mbr[3..11] == b"EXFAT   " || looks_like_fat(mbr) {
        return Err(Rejected::FatBootSector);
    }
    let table = check_partitions(mbr)?;
    // A 512-byte peek cannot see LBA 1; the full inspection of the first 64 KiB does.
    if table == PartitionTable::Gpt && head.len() > SECTOR && !has_gpt_header(head) {
        return Err(Rejected::GptHeaderMissing);
    }
    Ok(table)
}

fn named_format_at_start(head: &[u8]) -> Option<Rejected> {
    let starts = |sig: &[u8]| head.starts_with(sig);
    if starts(b"QFI\xfb") {
        Some(Rejected::Qcow2)
    } else if starts(b"KDMV") || starts(b"COWD") || starts(b"# Disk DescriptorFile") {
        Some(Rejected::Vmdk)
    } else if starts(b"vhdxfile") {
        Some(Rejected::Vhdx)
    } else if starts(b"conectix") {
        // dynamic and differencing VHDs carry a copy of the footer at offset 0
        Some(Rejected::Vhd)
    } else if starts(b"QED\0") {
        Some(Rejected::Qed)
    } else if starts(b"LUKS\xba\xbe") {
        Some(Rejected::Luks)
    } else if head.len() >= 0x44 && head[0x40..0x44] == [0x7f, 0x10, 0xda, 0xbe] {
        Some(Rejected::Vdi)
    } else {
        None
    }
}

/// Signatures that can hide behind a valid-looking MBR: hybrid ISOs (isohybrid writes an MBR at 0
/// and the ISO 9660 volume descriptors at 32 KiB) and qcow2 data placed after a fake boot sector.
fn named_format_later(head: &[u8]) -> Option<Rejected> {
    for off in [0x8000usize, 0x8800, 0x9000] {
        if head.len() >= off + 6 && &head[off + 1..off + 6] == b"CD001" {
            return Some(Rejected::Iso9660);
        }
    }
    // qcow2 magic plus a known version (2 or 3) at any sector boundary
    let limit = head.len().min(INSPECT_LEN);
    let mut off = SECTOR;
    while off + 8 <= limit {
        if &head[off..off + 4] == b"QFI\xfb" && matches!(head[off + 4..off + 8], [0, 0, 0, 2] | [0, 0, 0, 3]) {
            return Some(Rejected::Qcow2);
        }
        off += SECTOR;
    }
    None
}

/// A FAT volume boot record has a BIOS parameter block: a jump, a sane bytes-per-sector, a
/// power-of-two cluster size, reserved sectors and one or two FATs. An MBR's code area (GRUB's
/// boot.img also starts with a jump) does not pass all of these at once.
fn looks_like_fat(s: &[u8]) -> bool {
    let jump = (s[0] == 0xEB && s[2] == 0x90) || s[0] == 0xE9;
    let bytes_per_sector = u16::from_le_bytes([s[11], s[12]]);
    let sectors_per_cluster = s[13];
    let reserved = u16::from_le_bytes([s[14], s[15]]);
    let fats = s[16];
    let media = s[21];
    let bpb = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && reserved >= 1
        && matches!(fats, 1 | 2)
        && (media == 0xF0 || media >= 0xF8);
    let fs_label = &s[54..59] == b"FAT12" || &s[54..59] == b"FAT16" || &s[82..87] == b"FAT32";
    jump && (bpb || fs_label)
}

fn check_partitions(mbr: &[u8]) -> Result<PartitionTable, Rejected> {
    let mut used = 0;
    let mut protective = false;
    for i in 0..4 {
        let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
        let status = e[0];
        let kind = e[4];
        let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        let sectors = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
        if status != 0x00 && status != 0x80 {
            return Err(Rejected::BadPartitionTable(format!(
                "entry {} has status 0x{status:02x} (expected 0x00 or 0x80)",
                i + 1
            )));
        }
        if kind == 0 {
            continue;
        }
        if start == 0 || sectors == 0 {
            return Err(Rejected::BadPartitionTable(format!(
                "entry {} (type 0x{kind:02x}) has start sector {start} and {sectors} sectors",
                i + 1
            )));
        }
        if kind == 0xEE {
            protective = true;
        }
        used += 1;
    }
    if used == 0 {
        return Err(Rejected::BadPartitionTable("no partitions".into()));
    }
    Ok(if protective {
        PartitionTable::Gpt
    } else {
        PartitionTable::Mbr
    })
}

/// The GPT header sits at LBA 1: byte 512 with 512-byte sectors, byte 4096 with 4 KiB sectors.
fn has_gpt_header(head: &[u8]) -> bool {
    [512usize, 4096]
        .iter()
        .any(|&off| head.len() >= off + 8 && &head[off..off + 8] == b"EFI PART")
}

/// Builders of sample disks, shared by this crate's tests and the integration tests so every
/// format case is built once.
pub mod samples {
    use super::*;

    /// A raw disk with one bootable Linux partition and `len` bytes in all (at least 512).
    pub fn raw_mbr(len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(SECTOR)];
        // a few bytes of boot code so the sector does not look empty
        d[0] = 0xFA;
        d[1] = 0x31;
        d[2] = 0xC0;
        set_entry(&mut d, 0, 0x80, 0x83, 2048, 204_800);
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    /// A raw disk with a protective MBR and a GPT header.
    pub fn raw_gpt(len: usize) -> Vec<u8> {
        let mut d = raw_mbr(len.max(2 * SECTOR));
        set_entry(&mut d, 0, 0x00, 0xEE, 1, 0xFFFF_FFFF);
        d[512..520].copy_from_slice(b"EFI PART");
        d
    }

    pub fn set_entry(d: &mut [u8], i: usize, status: u8, kind: u8, start: u32, sectors: u32) {
        let e = &mut d[446 + 16 * i..446 + 16 * (i + 1)];
        e.fill(0);
        e[0] = status;
        e[4] = kind;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
    }

    /// A buffer that starts with `magic` and is otherwise zero.
    pub fn with_magic(magic: &[u8], len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(magic.len())];
        d[..magic.len()].copy_from_slice(magic);
        d
    }

    pub fn qcow2(len: usize) -> Vec<u8> {
        let mut d = with_magic(b"QFI\xfb\0\0\0\x03", len);
        d[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        d
    }

    /// An isohybrid-style image: a valid MBR at 0 and an ISO 9660 primary volume descriptor at 32 KiB.
    pub fn hybrid_iso(len: usize) -> Vec<u8> {
        let mut d = raw_mbr(len.max(INSPECT_LEN));
        d[0x8000] = 1;
        d[0x8001..0x8006].copy_from_slice(b"CD001");
        d
    }

    /// A FAT32 volume boot record (what `mkfs.vfat` writes to a partition).
    pub fn fat32(len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(SECTOR)];
        d[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
        d[3..11].copy_from_slice(b"mkfs.fat");
        d[11..13].copy_from_slice(&512u16.to_le_bytes());
        d[13] = 8;
        d[14..16].copy_from_slice(&32u16.to_le_bytes());
        d[16] = 2;
        d[21] = 0xF8;
        d[82..90].copy_from_slice(b"FAT32   ");
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn accepts_raw_disks() {
        assert_eq!(inspect(&raw_mbr(512)), Ok(PartitionTable::Mbr));
        assert_eq!(inspect(&raw_mbr(1 << 20)), Ok(PartitionTable::Mbr));
        assert_eq!(inspect(&raw_gpt(1 << 16)), Ok(PartitionTable::Gpt));
        let mut grub = raw_mbr(4096);
        grub[0..3].copy_from_slice(&[0xEB, 0x63, 0x90]); // GRUB boot.img starts with a jump
        assert_eq!(inspect(&grub), Ok(PartitionTable::Mbr));
        let mut gpt4k = raw_mbr(8192);
        set_entry(&mut gpt4k, 0, 0, 0xEE, 1, 100);
        gpt4k[4096..4104].copy_from_slice(b"EFI PART");
        assert_eq!(inspect(&gpt4k), Ok(PartitionTable::Gpt));
    }

    #[test]
    fn names_container_formats() {
        let cases: Vec<(Vec<u8>, Rejected)> = vec![
            (qcow2(4096), Rejected::Qcow2),
            (with_magic(b"KDMV", 4096), Rejected::Vmdk),
            (with_magic(b"# Disk DescriptorFile\n", 4096), Rejected::Vmdk),
            (with_magic(b"vhdxfile", 4096), Rejected::Vhdx),
            (with_magic(b"conectix", 4096), Rejected::Vhd),
            (with_magic(b"QED\0", 4096), Rejected::Qed),
            (with_magic(b"LUKS\xba\xbe\0\x01", 4096), Rejected::Luks),
            (hybrid_iso(INSPECT_LEN), Rejected::Iso9660),
            (fat32(4096), Rejected::FatBootSector),
        ];
        for (bytes, want) in cases {
            assert_eq!(inspect(&bytes), Err(want.clone()), "{want}");
        }
        let mut vdi = vec![0u8; 4096];
        vdi[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(inspect(&vdi), Err(Rejected::Vdi));
        let mut plain_iso = vec![0u8; INSPECT_LEN];
        plain_iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(inspect(&plain_iso), Err(Rejected::Iso9660));
    }

    #[test]
    fn qcow2_behind_an_mbr() {
        let mut d = raw_mbr(INSPECT_LEN);
        d[8 * 512..8 * 512 + 8].copy_from_slice(b"QFI\xfb\0\0\0\x02");
        assert_eq!(inspect(&d), Err(Rejected::Qcow2));
        // the magic alone, without a version, at an odd offset is data, not a header
        let mut d = raw_mbr(INSPECT_LEN);
        d[1001..1005].copy_from_slice(b"QFI\xfb");
        assert!(inspect(&d).is_ok());
    }

    #[test]
    fn refuses_broken_mbrs() {
        assert_eq!(inspect(&raw_mbr(512)[..511]), Err(Rejected::TooShort { len: 511 }));
        assert_eq!(inspect(&[]), Err(Rejected::TooShort { len: 0 }));
        let mut d = raw_mbr(512);
        d[511] = 0;
        assert_eq!(inspect(&d), Err(Rejected::NoBootSignature));
        let mut d = raw_mbr(512);
        d[446] = 0x7F;
        assert!(matches!(inspect(&d), Err(Rejected::BadPartitionTable(_))));
        let mut d = raw_mbr(512);
        set_entry(&mut d, 0, 0, 0, 0, 0);
        assert!(matches!(inspect(&d), Err(Rejected::BadPartitionTable(_))));
        let mut d = raw_mbr(512);
        set_entry(&mut d, 1, 0, 0x83, 0, 10);
        assert!(matches!(inspect(&d), Err(Rejected::BadPartitionTable(_))));
        let mut d = raw_mbr(4096);
        set_entry(&mut d, 0, 0, 0xEE, 1, 100);
        assert_eq!(inspect(&d), Err(Rejected::GptHeaderMissing));
        assert_eq!(
            inspect(&d[..512]),
            Ok(PartitionTable::Gpt),
            "a 512-byte peek cannot check LBA 1 yet"
        );
        assert_eq!(inspect(&vec![0u8; 4096]), Err(Rejected::NoBootSignature));
    }
}
