"""The load side of bench/soak: CLIENTS well-behaved clients and HOSTILE hostile connections
against one strata server for SECS seconds. Writes a JSON summary to OUT and a table to stdout.

    python3 bench/soak.py BASE TOKEN SECS CLIENTS HOSTILE OUT

Well-behaved clients each own an organization slot and loop over a weighted mix: v2 queries,
gets, creates, small uploads (64 KiB raw disks), downloads and deletes. Hostile connections
(thirds): slow headers (a byte every 2 s, never finished), stalled upload bodies (1 KiB of a
declared 1 MiB, then silence), unfinished chunked bodies (POST /healthz, one chunk, then
silence). Each hostile connection waits for the server to close it, then opens another.
"""
import asyncio
import json
import random
import struct
import sys
import time
from collections import defaultdict
from urllib.parse import urlsplit

import aiohttp

BASE, TOKEN, SECS, CLIENTS, HOSTILE, OUT = sys.argv[1:7]
SECS, CLIENTS, HOSTILE = float(SECS), int(CLIENTS), int(HOSTILE)
ORGS = [f"soak-{i}" for i in range(10)]
REGION = "local"
AUTH = {"authorization": f"Bearer {TOKEN}"}

disk = bytearray(64 << 10)
disk[446:462] = struct.pack("<B3xB3xII", 0x80, 0x83, 2048, 2000)
disk[510:512] = b"\x55\xaa"
DISK = bytes(disk)

latency = defaultdict(list)  # kind -> [seconds]
statuses = defaultdict(lambda: defaultdict(int))  # kind -> status -> n
errors = defaultdict(int)  # kind -> transport errors
hostile = defaultdict(lambda: defaultdict(int))  # kind -> outcome -> n
hostile_close_secs = defaultdict(list)


def v1(org):
    return f"{BASE}/api/v1/organizations/{org}/regions/{REGION}/images"


async def call(session, kind, method, url, expect_json=True, **kw):
    t0 = time.monotonic()
    try:
        async with session.request(method, url, headers=AUTH, **kw) as r:
            body = await r.read()
            dt = time.monotonic() - t0
            latency[kind].append(dt)
            statuses[kind][r.status] += 1
            if expect_json and r.content_type == "application/json" and body:
                return r.status, json.loads(body)
            return r.status, body
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        errors[f"{kind}: {type(e).__name__}"] += 1
        return None, None


async def client(n, session, deadline):
    org = ORGS[n % len(ORGS)]
    mine = []  # (id, state)
    seq = 0
    rnd = random.Random(n)
    while time.monotonic() < deadline:
        op = rnd.choices(
            ["query", "get", "create", "upload", "download", "delete"], weights=[20, 25, 15, 12, 18, 10]
        )[0]
        if op in ("get", "upload", "download", "delete") and not mine:
            op = "create"
        if len(mine) > 12:
            op = "delete"
        if op == "query":
            await call(
                session, "query", "GET", f"{BASE}/api/v2/regions/{REGION}/images",
                params={"organizationID": org, "limit": "20", "status": "ready"},
            )
        elif op == "create":
            seq += 1
            st, body = await call(
                session, "create", "POST", v1(org), json={"name": f"c{n}-{seq}", "source": {"type": "upload"}}
            )
            if st == 201:
                mine.append([body["id"], "pending"])
        elif op == "get":
            i, _ = rnd.choice(mine)
            await call(session, "get", "GET", f"{v1(org)}/{i}")
        elif op == "upload":
            pending = [m for m in mine if m[1] == "pending"]
            if not pending:
                seq += 1
                st, body = await call(
                    session, "create", "POST", v1(org), json={"name": f"c{n}-{seq}", "source": {"type": "upload"}}
                )
                if st != 201:
                    continue
                pending = [[body["id"], "pending"]]
                mine.append(pending[0])
            m = pending[0]
            st, _ = await upload(session, org, m[0])
            if st == 200:
                m[1] = "ready"
        elif op == "download":
            ready = [m for m in mine if m[1] == "ready"]
            if not ready:
                continue
            i, _ = rnd.choice(ready)
            st, body = await call(session, "download", "GET", f"{v1(org)}/{i}/file", expect_json=False)
            if st == 200 and body != DISK:
                errors["download: wrong bytes"] += 1
        elif op == "delete":
            m = mine.pop(0)
            await call(session, "delete", "DELETE", f"{v1(org)}/{m[0]}")


async def upload(session, org, image):
    t0 = time.monotonic()
    try:
        async with session.put(
            f"{v1(org)}/{image}/file", data=DISK, headers={**AUTH, "content-type": "application/octet-stream"}
        ) as r:
            await r.read()
            latency["upload"].append(time.monotonic() - t0)
            statuses["upload"][r.status] += 1
            return r.status, None
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        errors[f"upload: {type(e).__name__}"] += 1
        return None, None


async def hostile_conn(n, deadline, pending_ids):
    u = urlsplit(BASE)
    host, port = u.hostname, u.port
    kind = ["slow-headers", "stalled-body", "unfinished-chunked"][n % 3]
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as e:
            hostile[kind][f"connect failed: {type(e).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        hostile[kind]["opened"] += 1
        t0 = time.monotonic()
        try:
            if kind == "slow-headers":
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: soak\r\n")
            elif kind == "stalled-body":
                org, image = pending_ids[n % len(pending_ids)]
                path = f"/api/v1/organizations/{org}/regions/{REGION}/images/{image}/file"
                writer.write(
                    f"PUT {path} HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {TOKEN}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {1 << 20}\r\n\r\n".encode()
                    + DISK[:1024]
                )
            else:
                writer.write(
                    b"POST /healthz HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n"
                    b"Content-Type: application/json\r\n\r\n10\r\n{\"a\":"
                )
            await writer.drain()
            closed = False
            while time.monotonic() < deadline:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout=2)
                except asyncio.TimeoutError:
                    if kind == "slow-headers":
                        writer.write(b"X")  # one more byte of a header that never ends
                        await writer.drain()
                    continue
                if not data:
                    closed = True
                    break
            if closed:
                hostile[kind]["closed by server"] += 1
                hostile_close_secs[kind].append(time.monotonic() - t0)
            else:
                hostile[kind]["still open at the end"] += 1
        except (ConnectionError, OSError):
            hostile[kind]["reset by server"] += 1
            hostile_close_secs[kind].append(time.monotonic() - t0)
        finally:
            writer.close()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main():
    conn = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        # images the stalled uploads aim at (one per stalled connection)
        pending_ids = []
        for i in range(max(1, HOSTILE // 3 + 1)):
            org = "soak-hostile"
            st, body = await call(session, "setup", "POST", v1(org), json={"name": f"h{i}", "source": {"type": "upload"}})
            if st == 201:
                pending_ids.append((org, body["id"]))
        latency.pop("setup", None)
        statuses.pop("setup", None)
        start = time.monotonic()
        deadline = start + SECS
        tasks = [asyncio.create_task(client(i, session, deadline)) for i in range(CLIENTS)]
        tasks += [asyncio.create_task(hostile_conn(i, deadline, pending_ids)) for i in range(HOSTILE)]
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    kinds = ["query", "get", "create", "upload", "download", "delete"]
    total = sum(len(latency[k]) for k in kinds)
    five = {k: sum(n for s, n in statuses[k].items() if s >= 500) for k in kinds}
    summary = {
        "seconds": round(elapsed, 1),
        "clients": CLIENTS,
        "hostile": HOSTILE,
        "requests": total,
        "rps": round(total / elapsed, 1),
        "per_kind": {
            k: {
                "n": len(latency[k]),
                "p50_ms": round(pct(latency[k], 50) * 1000, 1),
                "p99_ms": round(pct(latency[k], 99) * 1000, 1),
                "statuses": dict(sorted(statuses[k].items())),
            }
            for k in kinds
        },
        "5xx": sum(five.values()),
        "transport_errors": dict(errors),
        "hostile_outcomes": {k: dict(v) for k, v in hostile.items()},
        "hostile_close_p50_s": {k: round(pct(v, 50), 1) for k, v in hostile_close_secs.items()},
    }
    print(f"{'kind':<10} {'requests':>9} {'p50_ms':>8} {'p99_ms':>8}  statuses")
    for k in kinds:
        s = summary["per_kind"][k]
        print(f"{k:<10} {s['n']:>9} {s['p50_ms']:>8} {s['p99_ms']:>8}  {s['statuses']}")
    print(f"total: {total} requests in {elapsed:.1f}s ({summary['rps']}/s); 5xx: {summary['5xx']}")
    print(f"transport errors: {dict(errors) or 'none'}")
    for k, v in hostile.items():
        print(f"hostile {k}: {dict(v)}; median time to close: {summary['hostile_close_p50_s'].get(k, '-')} s")
    with open(OUT, "w") as f:
        json.dump(summary, f, indent=2)


asyncio.run(main())
