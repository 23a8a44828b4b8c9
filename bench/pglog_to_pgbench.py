"""Turns the statements one role ran (PostgreSQL log with log_statement = 'all') into a pgbench
script that runs the same SQL as prepared statements with the same parameters (bench/run).

    tail ... LOG | python3 bench/pglog_to_pgbench.py ROLE OUT   -> OUT.sql, OUT.args (-D p1=... ...)

Keeps the SELECTs on images and image_tags (what a v2 query sends), in order.
"""
import re
import sys

role, out = sys.argv[1:3]
stmts = []  # [sql, params]
tag = f"] {role}@"
for line in sys.stdin:
    if tag not in line:
        continue
    m = re.search(r" LOG:  (?:execute [^:]*|statement): (.*)$", line)
    if m:
        stmts.append([m.group(1), {}])
        continue
    m = re.search(r" DETAIL:  parameters: (.*)$", line)
    if m and stmts:
        for n, v in re.findall(r"\$(\d+) = ('(?:[^']|'')*'|NULL)", m.group(1)):
            stmts[-1][1][n] = None if v == "NULL" else v[1:-1].replace("''", "'")
keep = [s for s in stmts if s[0].lstrip().upper().startswith("SELECT") and re.search(r'"?image(_tag)?s"?', s[0])]
if not keep:
    sys.exit("pglog_to_pgbench: no statement captured")
script, args = [], []
for i, (sql, params) in enumerate(keep):
    def sub(m, i=i, params=params):
        n = m.group(1)
        if params.get(n) is None:
            return "NULL"
        return f":s{i}p{n}"
    script.append(re.sub(r"\$(\d+)\b", sub, sql) + ";")
    args += [f"-Ds{i}p{n}={v}" for n, v in params.items() if v is not None]
open(out + ".sql", "w").write("\n".join(script) + "\n")
open(out + ".args", "w").write(" ".join(args) + "\n")
