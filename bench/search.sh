#!/usr/bin/env bash
# Part of make bench: import throughput and search latency at >= 100,000 resources.
# Replicates the Synthea test patients (fresh UUIDs per copy) to BENCH_RESOURCES
# (default 100000), imports them with `carevault import` (durable, one transaction per
# Bundle) measuring resources/s and peak memory, then serves the store and measures
# first-page latency of three searches, with read-by-id over the same client as the
# baseline. Prints a Markdown section on stdout. Listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CV_BIN:-build/carevault}
WANT=${BENCH_RESOURCES:-100000}
REPEATS=${BENCH_SEARCH_REPEATS:-300}
work=$(mktemp -d /tmp/cv-bench-search-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

existing=(); for f in tests/data/synthea/*.json.gz; do [ -f "$f" ] && existing+=("$f"); done
[ ${#existing[@]} -gt 0 ] || existing=(tests/data/synthea/*.json)
total=$(python3 bench/replicate.py "$work/in" "$WANT" "${existing[@]}")
files=$(ls "$work/in" | wc -l)
"$BIN" init --data "$work/data" >/dev/null 2>&1

# import, with the peak resident memory of the process
read -r secs maxrss imported < <(python3 - "$BIN" "$work/data" "$work/in" <<'PY'
import resource, subprocess, sys, time, re
t0 = time.time()
p = subprocess.run([sys.argv[1], "import", "--data", sys.argv[2], sys.argv[3]], capture_output=True, text=True)
dt = time.time() - t0
m = re.search(r"imported (\d+) resources", p.stdout)
print(f"{dt:.1f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {m.group(1) if m else 0}")
PY
)
rate=$(python3 -c "print(f'{$imported/$secs:.0f}')")
rss_mb=$(python3 -c "print(f'{$maxrss/1024:.0f}')")
db_mb=$(du -sm "$work/data" | cut -f1)

PORT=18447
"$BIN" serve --data "$work/data" --listen 127.0.0.1:$PORT --threads 2 2>"$work/cv.log" &
pid=$!
for _ in $(seq 300); do curl -sf --cacert "$work/data/tls/cert.pem" https://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
TOKEN=$(cat "$work/data/bootstrap-token")
get() { curl -sf --cacert "$work/data/tls/cert.pem" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$PORT$1"; }
# a patient with many observations, and a family-name prefix of a real patient
pat=$(get "/fhir/Patient?_count=200&_elements=id" | python3 -c "import json,sys; b=json.load(sys.stdin); print(b['entry'][len(b['entry'])//2]['resource']['id'])")
fam=$(get "/fhir/Patient/$pat" | python3 -c "import json,sys; print(json.load(sys.stdin)['name'][0]['family'][:4])")
lat=$(python3 bench/latency.py 127.0.0.1 $PORT "$work/data/tls/cert.pem" "$TOKEN" "$REPEATS" \
  "read=/fhir/Patient/$pat" \
  "name=/fhir/Patient?name=$fam" \
  "obs=/fhir/Observation?patient=$pat&code=http://loinc.org%7C8302-2&date=ge2000-01-01" \
  "enc=/fhir/Encounter?patient=$pat&_sort=-date")
field() { echo "$lat" | awk -v n="$1" -v k="$2" '$1 == n { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) print a[2] } }'; }

echo "## Import and search at $imported resources"
echo
echo "The $(ls "${existing[@]}" | wc -l) Synthea test patients replicated with fresh UUIDs into $files transaction Bundles ($total resources), loaded with \`carevault import\` (one durable transaction per Bundle, two workers), then served; latency is measured over one keep-alive TLS connection, $REPEATS requests per query after 5 warm-up ones, with read-by-id through the same client as the baseline. Names in the queries are truncated to their first 4 characters and never printed."
echo
echo "| measurement | result | target |"
echo "|---|---|---|"
echo "| import, resources/s (durable) | $rate ($imported in $secs s) | ≥ 5000 |"
echo "| import, peak resident memory | $rss_mb MB | < 300 MB |"
echo "| data directory after import | $db_mb MB | - |"
echo "| read by id (baseline), p50 / p99 ms | $(field read p50_ms) / $(field read p99_ms) | - |"
echo "| \`Patient?name=<4 letters>\`, p50 / p99 ms ($(field name entries) entries) | $(field name p50_ms) / $(field name p99_ms) | p99 < 20 |"
echo "| \`Observation?patient=&code=&date=ge…\`, p50 / p99 ms ($(field obs entries) entries) | $(field obs p50_ms) / $(field obs p99_ms) | p99 < 20 |"
echo "| \`Encounter?patient=&_sort=-date\`, p50 / p99 ms ($(field enc entries) entries) | $(field enc p50_ms) / $(field enc p99_ms) | p99 < 20 |"
echo
echo "Non-200 answers: $(echo "$lat" | awk '{for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == "non200") n += a[2] }} END {print n + 0}')."
