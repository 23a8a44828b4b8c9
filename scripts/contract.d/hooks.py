"""schemathesis hooks for scripts/contract.

- Outside the stateful phase, a well-formed generated imageID is replaced with a real fixture
  (READY_ID, or PENDING_ID for uploads), so per-image operations reach their real logic rather
  than 404. The stateful phase keeps the ids that createImage's OpenAPI links hand over, so it
  uploads to, patches and deletes the images it created. Malformed ids stay, to test refusals.
- Every URL import is pointed at the loopback server the script runs: generated URLs would make
  the server under test resolve and connect to arbitrary hosts, which tests never do.
- Half of the uploads carry a real raw disk (chosen by the generated body's length, so the run
  stays reproducible) and go to a fresh pending image made for them, so successful uploads are
  checked against the spec many times, not once; the rest go to PENDING_ID and test refusals.
- Every (operation, status) is appended to $STRATA_CONTRACT_STATUSES for coverage.py.
"""
import itertools
import json
import os
import urllib.request
import uuid

import schemathesis
from schemathesis.generation.meta import TestPhase

IMPORT_URL = os.environ["STRATA_CONTRACT_IMPORT_URL"]
READY_ID = os.environ["STRATA_CONTRACT_READY_ID"]
PENDING_ID = os.environ["STRATA_CONTRACT_PENDING_ID"]
BASE = os.environ["STRATA_CONTRACT_BASE"]
TOKEN = os.environ["STRATA_CONTRACT_TOKEN"]
_fresh = itertools.count()


def _fresh_pending_image():
    """A new pending image in acme/local, created through the public API."""
    body = json.dumps({"name": f"contract-upload-{next(_fresh)}", "source": {"type": "upload"}}).encode()
    req = urllib.request.Request(
        f"{BASE}/api/v1/organizations/acme/regions/local/images", data=body, method="POST"
    )
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)["id"]
with open(os.environ["STRATA_CONTRACT_DISK"], "rb") as f:
    DISK = f.read()


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def _phase(case):
    meta = getattr(case, "meta", None)
    return meta.phase.name if meta is not None else None


def _loopback_only(case):
    """Points a URL import at the loopback server, whatever the generated URL was."""
    body = case.body
    if case.operation.definition.raw.get("operationId") == "createImage" and isinstance(body, dict):
        source = body.get("source")
        if isinstance(source, dict) and isinstance(source.get("url"), str):
            source["url"] = IMPORT_URL


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
    return case


@schemathesis.hook
def after_call(context, case, response):
    op = case.operation.definition.raw.get("operationId", case.operation.label)
    with open(os.environ["STRATA_CONTRACT_STATUSES"], "a") as f:
        f.write(f"{op}\t{response.status_code}\t{_phase(case)}\n")
