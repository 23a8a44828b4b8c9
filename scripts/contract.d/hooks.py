"""schemathesis hooks for scripts/contract.

- Every URL import is pointed at the loopback server the script runs: generated URLs would make
  the server under test resolve and connect to arbitrary hosts, which tests never do.
- Half of the uploads carry a real raw disk (chosen by the generated body's length, so the run
  stays reproducible), so uploads can succeed; the rest test refusals.
- Every (operation, status) is appended to $STRATA_CONTRACT_STATUSES for coverage.py.
"""
import os

import schemathesis

IMPORT_URL = os.environ["STRATA_CONTRACT_IMPORT_URL"]
with open(os.environ["STRATA_CONTRACT_DISK"], "rb") as f:
    DISK = f.read()


@schemathesis.hook
def map_case(context, case):
    op = case.operation.definition.raw.get("operationId")
    body = case.body
    if op == "createImage" and isinstance(body, dict):
        source = body.get("source")
        if isinstance(source, dict) and isinstance(source.get("url"), str):
            source["url"] = IMPORT_URL
    if op == "uploadImageFile" and isinstance(body, (bytes, bytearray)) and len(body) % 2 == 0:
        case.body = DISK
    return case


@schemathesis.hook
def after_call(context, case, response):
    op = case.operation.definition.raw.get("operationId", case.operation.label)
    with open(os.environ["STRATA_CONTRACT_STATUSES"], "a") as f:
        f.write(f"{op}\t{response.status_code}\n")
