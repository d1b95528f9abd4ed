#!/usr/bin/env python3
"""replicate.py - copies Synthea transaction Bundles until there are at least N resources.

usage: replicate.py OUT_DIR MIN_RESOURCES SRC_FILE...   (.json or .json.gz)

Each copy gets fresh UUIDs (every UUID in the file is replaced, consistently within
the copy), so the copies are distinct resources that reference each other like the
originals. Prints the number of resources written. For benchmarks only.
"""
import gzip
import json
import os
import re
import sys
import uuid

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def main():
    out, want, srcs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    texts = [load(p) for p in srcs]
    counts = [len(json.loads(t)["entry"]) for t in texts]
    per_round = sum(counts)
    rounds = max(1, -(-want // per_round))
    total = 0
    for r in range(rounds):
        for i, t in enumerate(texts):
            mapping = {}
            def fresh(m):
                u = m.group(0)
                if u not in mapping:
                    mapping[u] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{r}/{u}"))
                return mapping[u]
            with open(os.path.join(out, f"r{r:03d}-{i:03d}.json"), "w", encoding="utf-8") as fh:
                fh.write(UUID.sub(fresh, t))
            total += counts[i]
    print(total)


if __name__ == "__main__":
    main()
