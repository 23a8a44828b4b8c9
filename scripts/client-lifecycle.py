"""Drives an image's and a kernel's whole life cycle through a client generated from openapi/openapi.json.

No hand-written HTTP: every call goes through the generated functions and models, the client
raises on any status the spec does not declare, and every response body must parse into the
generated model types. Run by scripts/generated-client (part of the test command):

    python3 scripts/client-lifecycle.py BASE_URL TOKEN DISK_FILE ELF_FILE BUNDLE_FILE CATALOG_ENTRY BUNDLE_URL ADMIN_TOKEN

ELF_FILE is a real x86_64 ELF vmlinux, BUNDLE_FILE a real tar+zstd bundle (vmlinux, initrd.img,
modules/), BUNDLE_URL where a loopback server serves it, and CATALOG_ENTRY the name of the
server's [[kernel_catalog]] entry for that URL and sha256, ADMIN_TOKEN a platform admin's token
(scripts/generated-client makes them).
"""
import hashlib
import io
import sys
import time
import uuid

from strata_client import AuthenticatedClient
from strata_client.api.consumers import delete_image_consumer, list_image_consumers, put_image_consumer
from strata_client.api.health import healthz, metrics, readyz
from strata_client.api.image_files import download_image_file, head_image_file, upload_image_file
from strata_client.api.images import create_image, delete_image, get_image, get_usage, list_images, patch_image
from strata_client.api.kernel_files import download_kernel_file, upload_kernel_bundle, upload_kernel_file
from strata_client.api.defaults import ensure_defaults
from strata_client.models import DefaultsReport
from strata_client.api.kernels import (
    create_kernel,
    head_kernel_artifact,
    delete_kernel,
    delete_kernel_consumer,
    get_kernel,
    list_kernel_catalog,
    list_kernel_consumers,
    list_kernels,
    patch_kernel,
    put_kernel_consumer,
)
from strata_client.api.query import get_sign_in_info, list_regions, query_images, query_kernels
from strata_client.models import (
    Architecture,
    ConsumerRequest,
    ConsumerView,
    CreateImageRequest,
    CreateKernelRequest,
    KernelArtifact,
    KernelBundleUploadSource,
    KernelBundleUploadSourceType,
    KernelCatalogItem,
    KernelCatalogSource,
    KernelCatalogSourceType,
    KernelFormat,
    KernelPage,
    KernelUploadSource,
    KernelUploadSourceType,
    KernelUrlSource,
    KernelUrlSourceType,
    KernelView,
    PatchKernelRequest,
    RegionList,
    SignInInfo,
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

base, token, disk_path, elf_path, bundle_path, catalog_entry, bundle_url, admin_token = sys.argv[1:9]
ORG, REGION = "acme", "local"
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True, timeout=30)
with open(disk_path, "rb") as f:
    disk = f.read()
with open(elf_path, "rb") as f:
    elf = f.read()
with open(bundle_path, "rb") as f:
    bundle = f.read()
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
# regions and sign-in info
regions = step("list regions", list_regions.sync_detailed(client=client), 200, RegionList)
assert REGION in [r.id for r in regions.items], regions
sign_in = step("sign-in info", get_sign_in_info.sync_detailed(client=client), 200, SignInInfo)
assert sign_in.dev_key is True, "the server under test trusts the development key (strata token)"

# kernels: create, upload a real ELF vmlinux, upload a real tar+zstd bundle
knames = [f"kernel-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
kernel = step(
    f"create kernel {knames[0]}",
    create_kernel.sync_detailed(
        ORG,
        REGION,
        client=client,
        body=CreateKernelRequest(
            name=knames[0],
            version="6.1.0-18",
            source=KernelUploadSource(type_=KernelUploadSourceType.UPLOAD),
            architecture=Architecture.X86_64,
            distro="debian",
            tags=Tags.from_dict({"env": "test", "team": "client"}),
            description="vmlinux uploaded by the generated client",
        ),
    ),
    201,
    KernelView,
)
assert kernel.status.state == ImageState.PENDING and kernel.provenance.source.value == "upload"
kernel = step(
    "upload kernel file",
    upload_kernel_file.sync_detailed(ORG, REGION, kernel.id, client=client, body=File(payload=io.BytesIO(elf))),
    200,
    KernelView,
)
assert kernel.status.state == ImageState.READY and kernel.format_ == KernelFormat.ELF
assert kernel.artifacts.vmlinux.size_bytes == len(elf)
assert kernel.artifacts.vmlinux.sha256 == hashlib.sha256(elf).hexdigest()
error(
    "upload kernel file again",
    upload_kernel_file.sync_detailed(ORG, REGION, kernel.id, client=client, body=File(payload=io.BytesIO(elf))),
    409,
    "invalid-state",
)
catalog = step("kernel catalog", list_kernel_catalog.sync_detailed(ORG, REGION, client=client), 200, list)
entry = {c.name: c for c in catalog}[catalog_entry]
assert isinstance(entry, KernelCatalogItem) and not entry.in_organization and not entry.global_exists
bundled = step(
    f"create kernel {knames[1]}",
    create_kernel.sync_detailed(
        ORG,
        REGION,
        client=client,
        body=CreateKernelRequest(
            name=knames[1],
            version="6.1.0-18",
            source=KernelBundleUploadSource(type_=KernelBundleUploadSourceType.UPLOAD_BUNDLE),
        ),
    ),
    201,
    KernelView,
)
bundled = step(
    "upload kernel bundle",
    upload_kernel_bundle.sync_detailed(ORG, REGION, bundled.id, client=client, body=File(payload=io.BytesIO(bundle))),
    200,
    KernelView,
)
assert bundled.status.state == ImageState.READY and bundled.architecture == Architecture.X86_64
assert bundled.artifacts.vmlinux.sha256 == hashlib.sha256(elf).hexdigest()
assert bundled.artifacts.initrd is not None and bundled.artifacts.modules is not None
catalog = step("kernel catalog after the bundle", list_kernel_catalog.sync_detailed(ORG, REGION, client=client), 200, list)
assert {c.name: c for c in catalog}[catalog_entry].in_organization, "the bundle's sha256 is the catalog entry's"

# pulls on the job runner: the catalog entry and the same bundle by URL, from the loopback server
def wait_ready(k, what):
    for _ in range(300):
        if k.status.state != ImageState.IMPORTING:
            break
        time.sleep(0.1)
        k = get_kernel.sync_detailed(ORG, REGION, k.id, client=client).parsed
    assert isinstance(k, KernelView) and k.status.state == ImageState.READY, f"{what}: {k.status}"
    assert k.artifacts.vmlinux.sha256 == hashlib.sha256(elf).hexdigest()
    assert k.artifacts.initrd is not None and k.artifacts.modules is not None
    print(f"client: {what}: ready")
    return k


pulled = step(
    "create kernel from the catalog",
    create_kernel.sync_detailed(
        ORG,
        REGION,
        client=client,
        body=CreateKernelRequest(
            name=f"kernel-{uuid.uuid4().hex[:8]}-catalog",
            source=KernelCatalogSource(type_=KernelCatalogSourceType.CATALOG, entry=catalog_entry),
        ),
    ),
    201,
    KernelView,
)
assert pulled.provenance.source.value == "catalog" and pulled.version == entry.version
pulled = wait_ready(pulled, "catalog pull")
by_url = step(
    "create kernel from a URL",
    create_kernel.sync_detailed(
        ORG,
        REGION,
        client=client,
        body=CreateKernelRequest(
            name=f"kernel-{uuid.uuid4().hex[:8]}-url",
            version="6.1.0-18",
            source=KernelUrlSource(type_=KernelUrlSourceType.URL, url=bundle_url, sha256=hashlib.sha256(bundle).hexdigest()),
        ),
    ),
    201,
    KernelView,
)
by_url = wait_ready(by_url, "URL pull")
error(
    "create kernel from an unknown catalog entry",
    create_kernel.sync_detailed(
        ORG,
        REGION,
        client=client,
        body=CreateKernelRequest(
            name=f"kernel-{uuid.uuid4().hex[:8]}-nope",
            source=KernelCatalogSource(type_=KernelCatalogSourceType.CATALOG, entry="no-such-entry"),
        ),
    ),
    400,
    "invalid-input",
)
error("ensure defaults (not a platform admin)", ensure_defaults.sync_detailed(REGION, client=client), 403, "forbidden")
admin = AuthenticatedClient(base_url=base, token=admin_token, raise_on_unexpected_status=True, timeout=30)
report = step("ensure defaults (platform admin)", ensure_defaults.sync_detailed(REGION, client=admin), 200, DefaultsReport)
assert report.region_id == REGION and report.defaults == [], f"no defaults are configured here: {report}"

# get with ETag, patch with If-Match, a stale If-Match -> 412
got = get_kernel.sync_detailed(ORG, REGION, kernel.id, client=client)
step("get kernel", got, 200, KernelView)
ketag = got.headers["etag"]
step("get kernel, If-None-Match", get_kernel.sync_detailed(ORG, REGION, kernel.id, client=client, if_none_match=ketag), 304, None)
patched = patch_kernel.sync_detailed(
    ORG,
    REGION,
    kernel.id,
    client=client,
    body=PatchKernelRequest(tags=TagPatch.from_dict({"team": None, "owner": "ops"}), description="patched"),
    if_match=ketag,
)
step("patch kernel with If-Match", patched, 200, KernelView)
assert patched.parsed.tags["owner"] == "ops" and "team" not in patched.parsed.tags.to_dict()
assert patched.parsed.description == "patched" and patched.headers["etag"] != ketag
stale = patch_kernel.sync_detailed(
    ORG, REGION, kernel.id, client=client, body=PatchKernelRequest(description="late"), if_match=ketag
)
error("patch kernel with a stale If-Match", stale, 412, "precondition-failed")

# list, and the v2 query paged with nextPageToken
listed = step("list kernels", list_kernels.sync_detailed(ORG, REGION, client=client), 200, list)
assert {k.name for k in listed} >= set(knames) and all(isinstance(k, KernelView) for k in listed)
seen, page_token, pages = [], None, 0
while True:
    kwargs = {"page_token": page_token} if page_token else {}
    page = step(
        f"query kernels page {pages + 1}",
        query_kernels.sync_detailed(REGION, client=client, architecture=Architecture.X86_64, limit=1, **kwargs),
        200,
        KernelPage,
    )
    pages += 1
    seen += [k.name for k in page.items]
    page_token = page.next_page_token
    if not page_token:
        break
assert set(knames) <= set(seen) and pages >= len(knames), (seen, pages)

# artifacts: whole, a byte range, If-None-Match
whole = download_kernel_file.sync_detailed(ORG, REGION, kernel.id, KernelArtifact.VMLINUX, client=client)
step("download vmlinux", whole, 200, File)
assert whole.content == elf, "vmlinux differs"
part = download_kernel_file.sync_detailed(ORG, REGION, kernel.id, KernelArtifact.VMLINUX, client=client, range_="bytes=0-63")
step("download vmlinux, Range", part, 206, File)
assert part.content == elf[:64] and part.headers["content-range"] == f"bytes 0-63/{len(elf)}"
step(
    "download vmlinux, If-None-Match",
    download_kernel_file.sync_detailed(
        ORG, REGION, kernel.id, KernelArtifact.VMLINUX, client=client, if_none_match=whole.headers["etag"]
    ),
    304,
    None,
)
khead = head_kernel_artifact.sync_detailed(ORG, REGION, kernel.id, KernelArtifact.VMLINUX, client=client)
step("head vmlinux", khead, 200, None)
assert khead.content == b"", "HEAD sent a body"
assert int(khead.headers["content-length"]) == len(elf) and khead.headers["etag"] == whole.headers["etag"]
step(
    "head vmlinux, If-None-Match",
    head_kernel_artifact.sync_detailed(
        ORG, REGION, kernel.id, KernelArtifact.VMLINUX, client=client, if_none_match=khead.headers["etag"]
    ),
    304,
    None,
)
initrd = download_kernel_file.sync_detailed(ORG, REGION, bundled.id, KernelArtifact.INITRD, client=client)
step("download initrd", initrd, 200, File)
assert len(initrd.content) == bundled.artifacts.initrd.size_bytes
assert hashlib.sha256(initrd.content).hexdigest() == bundled.artifacts.initrd.sha256
error(
    "download a missing initrd",
    download_kernel_file.sync_detailed(ORG, REGION, kernel.id, KernelArtifact.INITRD, client=client),
    404,
    "not-found",
)

# consumers block deletion until removed
kc = step(
    "register kernel consumer",
    put_kernel_consumer.sync_detailed(
        ORG, REGION, kernel.id, "vm-7", client=client, body=ConsumerRequest(kind="vm", description="web-1")
    ),
    201,
    ConsumerView,
)
assert kc.id == "vm-7" and kc.kind == "vm"
kcs = step("list kernel consumers", list_kernel_consumers.sync_detailed(ORG, REGION, kernel.id, client=client), 200, list)
assert [c.id for c in kcs] == ["vm-7"] and all(isinstance(c, ConsumerView) for c in kcs)
error("delete kernel with a consumer", delete_kernel.sync_detailed(ORG, REGION, kernel.id, client=client), 409, "kernel-in-use")
step("remove kernel consumer", delete_kernel_consumer.sync_detailed(ORG, REGION, kernel.id, "vm-7", client=client), 204, None)

# an image that boots the kernel blocks its deletion (kernel-in-use) until the image is gone
booted = step(
    "create image with kernelId",
    create_image.sync_detailed(
        ORG,
        REGION,
        client=client,
        body=CreateImageRequest(
            name=f"client-boot-{uuid.uuid4().hex[:8]}",
            source=UploadSource(type_=UploadSourceType.UPLOAD),
            kernel_id=kernel.id,
        ),
    ),
    201,
    ImageView,
)
assert booted.kernel_id == kernel.id
in_use = error("delete kernel an image boots", delete_kernel.sync_detailed(ORG, REGION, kernel.id, client=client), 409, "kernel-in-use")
assert str(booted.id) in in_use.message, in_use.message
step("delete the booting image", delete_image.sync_detailed(ORG, REGION, booted.id, client=client), 204, None)
for k in (kernel, bundled, pulled, by_url):
    step(f"delete kernel {k.name}", delete_kernel.sync_detailed(ORG, REGION, k.id, client=client), 204, None)
error("get kernel after delete", get_kernel.sync_detailed(ORG, REGION, kernel.id, client=client), 404, "not-found")
# operator metrics: no token needed, no tenant data, and the calls above are counted
scrape = metrics.sync_detailed(client=client)
step("metrics", scrape, 200, None)
text = scrape.content.decode()
assert 'strata_http_requests_total{route="/api/v1/organizations/{organizationID}/regions/{regionID}/images"' in text
assert ORG not in text and str(img.id) not in text, "metrics carry tenant data"
print(f"client: life cycle complete ({steps} checked calls)")
