#!/usr/bin/env python3
"""Copies one template image (and its tags) N times straight into a Strata SQLite database, so the
console's first render can be measured against a large region without N API calls.
Usage: bulk-seed.py DB TEMPLATE_IMAGE_ID COUNT"""
import sqlite3, sys, uuid

db, template, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, timeout=30)
c.execute("PRAGMA busy_timeout = 30000")
cols = [r[1] for r in c.execute("PRAGMA table_info(images)")]
row = dict(zip(cols, c.execute("SELECT * FROM images WHERE id = ?", (template,)).fetchone()))
tags = c.execute("SELECT key, value, reserved FROM image_tags WHERE image_id = ?", (template,)).fetchall()
images, image_tags = [], []
for i in range(count):
    r = dict(row)
    r["id"] = str(uuid.uuid4())
    r["name"] = f"{row['name']}-{i:06d}"
    r["created_at"] = row["created_at"] - (i + 1) * 1_000_000
    r["updated_at"] = r["created_at"]
    images.append(tuple(r[k] for k in cols))
    image_tags.extend((r["id"], k, v, res) for k, v, res in tags)
with c:
    c.executemany(f"INSERT INTO images ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", images)
    c.executemany("INSERT INTO image_tags (image_id, key, value, reserved) VALUES (?, ?, ?, ?)", image_tags)
print(f"seeded {count} images")
