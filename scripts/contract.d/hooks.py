"""schemathesis hooks for scripts/contract.

- Outside the stateful phase, a well-formed generated imageID is replaced with a real fixture
  (READY_ID, or PENDING_ID for uploads), so per-image operations reach their real logic rather
  than 404. The stateful phase keeps the ids that createImage's OpenAPI links hand over, so it
  uploads to, patches and deletes the images it created. Malformed ids stay, to test refusals.
- Every URL import (images and kernels) is pointed at the loopback server the script runs: generated URLs would make
  the server under test resolve and connect to arbitrary hosts, which tests never do.
- Half of the uploads carry a real raw disk (chosen by the generated body's length, so the run
  stays reproducible) and go to a fresh pending image made for them, so successful uploads are
  checked against the spec many times, not once; the rest go to PENDING_ID and test refusals.
- Kernels: createKernel has no OpenAPI links, so in every phase a well-formed generated kernelID
  is replaced with KERNEL_READY_ID (a ready x86_64 kernel with a consumer), except that uploads
  and deleteKernel go to a fresh pending kernel made for the case (a ready kernel refuses uploads
  with 409, and deleting the fixture would leave the rest of the run nothing to read). Half of the
  uploads (again by body length) carry a real ELF vmlinux or a real tar+zstd bundle, so both
  upload routes are checked against the spec on success; the rest test refusals (422). Half of the
  positive catalog pulls (by entry length) name the real catalog entry, so pulls start (201).
- Every (operation, status) is appended to $STRATA_CONTRACT_STATUSES for coverage.py.
"""
import itertools
import json
import os
import urllib.parse
import urllib.request
import uuid

import schemathesis
from schemathesis.generation.meta import TestPhase
from schemathesis.generation.modes import GenerationMode

IMPORT_URL = os.environ["STRATA_CONTRACT_IMPORT_URL"]
BUNDLE_URL = os.environ["STRATA_CONTRACT_BUNDLE_URL"]
READY_ID = os.environ["STRATA_CONTRACT_READY_ID"]
PENDING_ID = os.environ["STRATA_CONTRACT_PENDING_ID"]
BASE = os.environ["STRATA_CONTRACT_BASE"]
TOKEN = os.environ["STRATA_CONTRACT_TOKEN"]
KERNEL_READY_ID = os.environ["STRATA_CONTRACT_KERNEL_READY_ID"]
CATALOG_ENTRY = "contract-debian"  # scripts/contract's [[kernel_catalog]] entry
_fresh = itertools.count()


def _create(collection, body):
    """Creates an image or kernel in acme/local through the public API; returns its id."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        f"{BASE}/api/v1/organizations/acme/regions/local/{collection}", data=data, method="POST"
    )
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)["id"]


def _fresh_pending_image():
    """A new pending image in acme/local."""
    return _create("images", {"name": f"contract-upload-{next(_fresh)}", "source": {"type": "upload"}})


def _fresh_pending_kernel(source_type):
    """A new pending x86_64 kernel in acme/local waiting for a vmlinux (`upload`) or a bundle."""
    return _create(
        "kernels",
        {"name": f"contract-kernel-{next(_fresh)}", "version": "6.1.0-18", "source": {"type": source_type}},
    )


with open(os.environ["STRATA_CONTRACT_DISK"], "rb") as f:
    DISK = f.read()
with open(os.environ["STRATA_CONTRACT_ELF"], "rb") as f:
    ELF = f.read()
with open(os.environ["STRATA_CONTRACT_BUNDLE"], "rb") as f:
    BUNDLE = f.read()
KERNEL_UPLOADS = {"uploadKernelFile": ("upload", ELF), "uploadKernelBundle": ("upload-bundle", BUNDLE)}


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def _phase(case):
    meta = getattr(case, "meta", None)
    return meta.phase.name if meta is not None else None


def _names_a_host(case, url):
    """Whether a URL could make the server connect somewhere. In negative cases a URL that names no
    http(s) host (e.g. "" or "0") is left as generated, since it may be the very value under test;
    it cannot reach anything, and the server's allow_hosts admits only 127.0.0.1 anyway."""
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode != GenerationMode.NEGATIVE:
        return True
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return True


def _loopback_only(case):
    """Points a URL import at the loopback server, whatever the generated URL was."""
    body = case.body
    op = case.operation.definition.raw.get("operationId")
    if op in ("createImage", "createKernel") and isinstance(body, dict):
        source = body.get("source")
        if isinstance(source, dict) and isinstance(source.get("url"), str) and _names_a_host(case, source["url"]):
            source["url"] = IMPORT_URL if op == "createImage" else BUNDLE_URL


@schemathesis.hook
def before_call(context, case, **kwargs):
    # Again right before the request goes out, in every phase: no case may make the server under
    # test resolve or connect to anything but 127.0.0.1.
    _loopback_only(case)


@schemathesis.hook
def map_case(context, case):
    op = case.operation.definition.raw.get("operationId")
    params = case.path_parameters
    if params and "imageID" in params and _phase(case) != TestPhase.STATEFUL and _is_uuid(params["imageID"]):
        params["imageID"] = PENDING_ID if op == "uploadImageFile" else READY_ID
    _loopback_only(case)
    body = case.body
    if op == "uploadImageFile" and isinstance(body, (bytes, bytearray, str)) and len(body) % 2 == 0:
        case.body = DISK
        if params and params.get("imageID") == PENDING_ID:
            params["imageID"] = _fresh_pending_image()
    if params and "kernelID" in params and _is_uuid(params["kernelID"]):
        if op in KERNEL_UPLOADS:
            source_type, good = KERNEL_UPLOADS[op]
            params["kernelID"] = _fresh_pending_kernel(source_type)
            if isinstance(body, (bytes, bytearray, str)) and len(body) % 2 == 0:
                case.body = good
        elif op == "deleteKernel":
            params["kernelID"] = _fresh_pending_kernel("upload")
        else:
            params["kernelID"] = KERNEL_READY_ID
    if op == "createKernel" and _phase(case) != TestPhase.STATEFUL and isinstance(body, dict):
        source = body.get("source")
        meta = getattr(case, "meta", None)
        positive = meta is None or meta.generation.mode == GenerationMode.POSITIVE
        if positive and isinstance(source, dict) and source.get("type") == "catalog":
            entry = source.get("entry")
            if isinstance(entry, str) and len(entry) % 2 == 0:
                source["entry"] = CATALOG_ENTRY
    return case


@schemathesis.hook
def after_call(context, case, response):
    op = case.operation.definition.raw.get("operationId", case.operation.label)
    with open(os.environ["STRATA_CONTRACT_STATUSES"], "a") as f:
        f.write(f"{op}\t{response.status_code}\t{_phase(case)}\n")
