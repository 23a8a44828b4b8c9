"""Creates the contract run's fixtures through the public API and prints them as shell variables.

READY_ID: a ready image (uploaded) with a registered consumer; PENDING_ID: an image waiting for
its upload. KERNEL_READY_ID: a ready x86_64 kernel (a real ELF vmlinux, the first 8 KiB of
/bin/true, uploaded) with a registered consumer. Also writes the real ELF to ELF_FILE and a real
bundle made by tar and zstd (vmlinux, initrd.img, modules/) to BUNDLE_FILE for hooks.py.
"""
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

base, token, disk_path, elf_path, bundle_path = sys.argv[1:6]
api = f"{base}/api/v1/organizations/acme/regions/local"


def call(method, url, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=30) as res:
        text = res.read()
        return json.loads(text) if text else None


def create(name):
    return call("POST", f"{api}/images", {"name": name, "tags": {"env": "contract"}, "source": {"type": "upload"}})["id"]


ready = create("contract-ready")
with open(disk_path, "rb") as f:
    call("PUT", f"{api}/images/{ready}/file", f.read(), "application/octet-stream")
call("PUT", f"{api}/images/{ready}/consumers/vm-fixture", {"kind": "vm", "description": "contract fixture"})
pending = create("contract-pending")

# A real x86_64 ELF executable header: the first 8 KiB of this machine's /bin/true.
with open("/bin/true", "rb") as f:
    elf = f.read(8192)
if elf[:4] != b"\x7fELF" or int.from_bytes(elf[18:20], "little") != 62:
    sys.exit("fixtures: /bin/true is not an x86_64 ELF")
with open(elf_path, "wb") as f:
    f.write(elf)
with tempfile.TemporaryDirectory() as tree:
    with open(os.path.join(tree, "vmlinux"), "wb") as f:
        f.write(elf)
    with open(os.path.join(tree, "initrd.img"), "wb") as f:
        f.write(b"contract initrd\n" * 64)
    os.makedirs(os.path.join(tree, "modules", "kernel"))
    with open(os.path.join(tree, "modules", "kernel", "dummy.ko"), "wb") as f:
        f.write(b"\x7fELF not really a module\n")
    subprocess.run(["tar", "--zstd", "-cf", bundle_path, "-C", tree, "vmlinux", "initrd.img", "modules"], check=True)

kernel = call(
    "POST",
    f"{api}/kernels",
    {"name": "contract-kernel", "version": "6.1.0-18", "architecture": "x86_64", "tags": {"env": "contract"},
     "source": {"type": "upload"}},
)["id"]
kernel_ready = call("PUT", f"{api}/kernels/{kernel}/file", elf, "application/octet-stream")
if kernel_ready["status"]["state"] != "ready":
    sys.exit(f"fixtures: kernel not ready after upload: {kernel_ready['status']}")
call("PUT", f"{api}/kernels/{kernel}/consumers/vm-fixture", {"kind": "vm", "description": "contract fixture"})
print(f"READY_ID={ready} PENDING_ID={pending} KERNEL_READY_ID={kernel}")
