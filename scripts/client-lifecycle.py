"""Drives an image's whole life cycle through a client generated from openapi/openapi.json.

No hand-written HTTP: every call goes through the generated functions and models, the client
raises on any status the spec does not declare, and every response body must parse into the
generated model types. Run by scripts/generated-client (part of the test command):

    python3 scripts/client-lifecycle.py BASE_URL TOKEN DISK_FILE
"""
import io
import sys
import uuid

from strata_client import AuthenticatedClient
from strata_client.api.consumers import delete_image_consumer, list_image_consumers, put_image_consumer
from strata_client.api.health import healthz, metrics, readyz
from strata_client.api.image_files import download_image_file, head_image_file, upload_image_file
from strata_client.api.images import create_image, delete_image, get_image, get_usage, list_images, patch_image
from strata_client.api.query import query_images
from strata_client.models import (
    Architecture,
    ConsumerRequest,
    ConsumerView,
    CreateImageRequest,
    Tags,
    ErrorBody,
    Health,
    ImagePage,
    ImageState,
    ImageView,
    PatchImageRequest,
    TagPatch,
    UploadSource,
    UploadSourceType,
    UsageView,
    Visibility,
)
from strata_client.types import File

base, token, disk_path = sys.argv[1:4]
ORG, REGION = "acme", "local"
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True, timeout=30)
with open(disk_path, "rb") as f:
    disk = f.read()
steps = 0


def step(what, res, status, model):
    """Checks the status and that the body parsed into the generated model."""
    global steps
    steps += 1
    assert res.status_code == status, f"{what}: {res.status_code} {res.content[:300]!r}"
    if model is not None:
        assert isinstance(res.parsed, model), f"{what}: parsed as {type(res.parsed)}"
    print(f"client: {what}: {int(res.status_code)}")
    return res.parsed


def error(what, res, status, code):
    body = step(what, res, status, ErrorBody)
    assert body.error == code, f"{what}: {body.error}"
    assert body.message and body.request_id
    return body


step("healthz", healthz.sync_detailed(client=client), 200, Health)
step("readyz", readyz.sync_detailed(client=client), 200, Health)

# create, upload, get
names = [f"client-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
tags = Tags.from_dict({"env": "test", "team": "client"})
created = []
for name in names:
    req = CreateImageRequest(
        name=name,
        source=UploadSource(type_=UploadSourceType.UPLOAD),
        architecture=Architecture.X86_64,
        visibility=Visibility.ORGANIZATION,
        tags=tags,
        description="made by the generated client",
    )
    img = step(f"create {name}", create_image.sync_detailed(ORG, REGION, client=client, body=req), 201, ImageView)
    assert img.status.state == ImageState.PENDING and img.architecture == Architecture.X86_64
    created.append(img)
img = created[0]
uploaded = step(
    "upload",
    upload_image_file.sync_detailed(ORG, REGION, img.id, client=client, body=File(payload=io.BytesIO(disk))),
    200,
    ImageView,
)
assert uploaded.status.state == ImageState.READY and uploaded.size_bytes == len(disk)
got = get_image.sync_detailed(ORG, REGION, img.id, client=client)
step("get", got, 200, ImageView)
etag = got.headers["etag"]
dl = download_image_file.sync_detailed(ORG, REGION, img.id, client=client)
assert dl.status_code == 200 and dl.content == disk, "download differs"
print("client: download: 200")
head = head_image_file.sync_detailed(ORG, REGION, img.id, client=client)
step("head file", head, 200, None)
assert head.content == b"", "HEAD sent a body"
assert int(head.headers["content-length"]) == len(disk) and head.headers["etag"] == dl.headers["etag"]
assert head.headers["accept-ranges"] == "bytes"
step("head file, If-None-Match", head_image_file.sync_detailed(ORG, REGION, img.id, client=client, if_none_match=head.headers["etag"]), 304, None)
step("download, If-None-Match", download_image_file.sync_detailed(ORG, REGION, img.id, client=client, if_none_match=head.headers["etag"]), 304, None)
step("get, If-None-Match", get_image.sync_detailed(ORG, REGION, img.id, client=client, if_none_match=etag), 304, None)

# patch with If-Match, then a stale If-Match -> 412
patch = PatchImageRequest(tags=TagPatch.from_dict({"team": None, "owner": "ops"}), protected=False)
patched = patch_image.sync_detailed(ORG, REGION, img.id, client=client, body=patch, if_match=etag)
step("patch with If-Match", patched, 200, ImageView)
assert patched.parsed.tags["owner"] == "ops" and "team" not in patched.parsed.tags.to_dict()
assert patched.headers["etag"] != etag
stale = patch_image.sync_detailed(
    ORG, REGION, img.id, client=client, body=PatchImageRequest(description="late"), if_match=etag
)
error("patch with a stale If-Match", stale, 412, "precondition-failed")

# list, and the v2 query paged with nextPageToken
listed = list_images.sync_detailed(ORG, REGION, client=client)
assert listed.status_code == 200 and {i.name for i in listed.parsed} >= set(names)
assert all(isinstance(i, ImageView) for i in listed.parsed)
print("client: list: 200")
seen, page_token, pages = [], None, 0
while True:
    kwargs = {"page_token": page_token} if page_token else {}
    page = step(
        f"query page {pages + 1}",
        query_images.sync_detailed(REGION, client=client, tag=["env=test"], limit=1, **kwargs),
        200,
        ImagePage,
    )
    pages += 1
    seen += [i.name for i in page.items]
    page_token = page.next_page_token
    if not page_token:
        break
assert set(names) <= set(seen) and pages >= len(names), (seen, pages)
step("usage", get_usage.sync_detailed(ORG, REGION, client=client), 200, UsageView)

# a consumer blocks deletion until it is removed
consumer = step(
    "register consumer",
    put_image_consumer.sync_detailed(
        ORG, REGION, img.id, "vm-42", client=client, body=ConsumerRequest(kind="vm", description="web-1")
    ),
    201,
    ConsumerView,
)
assert consumer.id == "vm-42" and consumer.kind == "vm"
consumers = list_image_consumers.sync_detailed(ORG, REGION, img.id, client=client)
assert consumers.status_code == 200 and [c.id for c in consumers.parsed] == ["vm-42"]
assert all(isinstance(c, ConsumerView) for c in consumers.parsed)
error("delete while in use", delete_image.sync_detailed(ORG, REGION, img.id, client=client), 409, "image-in-use")
step("remove consumer", delete_image_consumer.sync_detailed(ORG, REGION, img.id, "vm-42", client=client), 204, None)
for i in created:
    step(f"delete {i.name}", delete_image.sync_detailed(ORG, REGION, i.id, client=client), 204, None)
error("get after delete", get_image.sync_detailed(ORG, REGION, img.id, client=client), 404, "not-found")
# operator metrics: no token needed, no tenant data, and the calls above are counted
scrape = metrics.sync_detailed(client=client)
step("metrics", scrape, 200, None)
text = scrape.content.decode()
assert 'strata_http_requests_total{route="/api/v1/organizations/{organizationID}/regions/{regionID}/images"' in text
assert ORG not in text and str(img.id) not in text, "metrics carry tenant data"
print(f"client: life cycle complete ({steps} checked calls)")
