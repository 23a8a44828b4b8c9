"""Fails unless every operation of the served spec got at least one 2xx during the contract run."""
import collections
import json
import sys
import urllib.request

spec_url, statuses_path = sys.argv[1:3]
with urllib.request.urlopen(spec_url, timeout=10) as res:
    spec = json.load(res)
operations = sorted(
    op["operationId"]
    for item in spec["paths"].values()
    for method, op in item.items()
    if method in {"get", "put", "post", "patch", "delete", "head", "options"}
)
seen = collections.defaultdict(collections.Counter)
with open(statuses_path) as f:
    for line in f:
        op, status = line.rstrip("\n").split("\t")[:2]
        seen[op][int(status)] += 1
missing = []
for op in operations:
    counts = seen.get(op, {})
    ok = sum(n for s, n in counts.items() if 200 <= s < 300)
    total = sum(counts.values())
    print(f"contract: {op:<24} {total:>5} calls, {ok:>5} 2xx  {dict(sorted(counts.items()))}")
    if ok == 0:
        missing.append(op)
if missing:
    sys.exit(f"contract: operations that never got a 2xx: {', '.join(missing)}")
print(f"contract: all {len(operations)} operations got a 2xx")
