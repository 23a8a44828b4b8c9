"""Creates the contract run's fixtures through the public API and prints them as shell variables.

READY_ID: a ready image (uploaded) with a registered consumer; PENDING_ID: an image waiting for
its upload. KERNEL_READY_ID: a ready x86_64 kernel made from the real tar+zstd bundle
scripts/contract builds (a real ELF vmlinux, initrd, modules), with a registered consumer.
"""
import json
import sys
import urllib.request

base, token, disk_path, bundle_path = sys.argv[1:5]
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

kernel = call(
    "POST",
    f"{api}/kernels",
    {"name": "contract-kernel", "version": "6.1.0-18", "architecture": "x86_64", "tags": {"env": "contract"},
     "source": {"type": "upload-bundle"}},
)["id"]
with open(bundle_path, "rb") as f:
    kernel_ready = call("PUT", f"{api}/kernels/{kernel}/bundle", f.read(), "application/octet-stream")
if kernel_ready["status"]["state"] != "ready" or set(kernel_ready["artifacts"]) != {"vmlinux", "initrd", "modules"}:
    sys.exit(f"fixtures: kernel not ready with three files after upload: {kernel_ready}")
call("PUT", f"{api}/kernels/{kernel}/consumers/vm-fixture", {"kind": "vm", "description": "contract fixture"})
print(f"READY_ID={ready} PENDING_ID={pending} KERNEL_READY_ID={kernel}")
