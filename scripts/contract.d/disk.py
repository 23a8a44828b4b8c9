"""Writes a small raw disk image that Strata accepts: an MBR with one bootable Linux partition."""
import struct
import sys

disk = bytearray(1 << 20)
disk[446:462] = struct.pack("<B3xB3xII", 0x80, 0x83, 2048, 2000)
disk[510:512] = b"\x55\xaa"
with open(sys.argv[1], "wb") as f:
    f.write(disk)
