#!/usr/bin/env python3
"""latency.py - first-page latency of searches over one keep-alive TLS connection.

usage: latency.py HOST PORT CA_FILE TOKEN REPEATS NAME=PATH...

Sends each PATH REPEATS times (after 5 warm-up requests), one at a time, and prints
one line per NAME: p50 and p99 in milliseconds, the number of entries of the first
page, and non-200 answers. The client's own overhead is in the numbers (and in the
read-by-id baseline measured the same way).
"""
import http.client
import json
import ssl
import sys
import time


def main():
    host, port, ca, token, repeats = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection(host, port, context=ctx)
    headers = {"Authorization": "Bearer " + token, "Accept": "application/fhir+json"}
    for spec in sys.argv[6:]:
        name, path = spec.split("=", 1)
        times, bad, entries = [], 0, 0
        for i in range(repeats + 5):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            dt = (time.perf_counter() - t0) * 1000
            if r.status != 200:
                bad += 1
            elif i == 0:
                doc = json.loads(body)
                entries = len(doc.get("entry", [])) if doc.get("resourceType") == "Bundle" else 1
            if i >= 5:
                times.append(dt)
        times.sort()
        p50 = times[len(times) // 2]
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"{name} p50_ms={p50:.2f} p99_ms={p99:.2f} entries={entries} non200={bad}")


if __name__ == "__main__":
    main()
