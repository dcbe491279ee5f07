#!/usr/bin/env bash
# Load test of `shopnet serve` (README, Serving): wrk (Debian's package) on the loopback
# address only, against a sentiment bundle of configs/sentiment_zh.toml's net and an
# intent bundle of configs/intent_taobao.toml's net, with 1, 8 and 64 concurrent clients
# for DURATION seconds each (default 60), every run also bounded in requests
# (MAX_REQUESTS), so that it stops by itself. Prints one table: requests/s, p50 and p99
# latency, non-2xx answers and socket errors per run, and the server's peak memory; then
# `shopnet score` over the same inputs, the batch path's throughput.
#
#   scripts/bench_serve.sh                      # trains small bundles of the two recipes' nets
#   SENTIMENT_BUNDLE=bundles/sentiment_zh INTENT_BUNDLE=bundles/intent scripts/bench_serve.sh
#
# The bundles' weights do not change the cost of a request, their nets do: without a
# bundle given, each recipe's net is trained for one epoch on a slice of its data.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-60}"
MAX_REQUESTS="${MAX_REQUESTS:-2000000}"
THREADS="${THREADS:-2}"
command -v wrk > /dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build -q
BIN="${CARGO_TARGET_DIR:-target}/debug/shopnet"
out=$(mktemp -d)
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2> /dev/null; rm -rf "$out"' EXIT

reviews=../shared/data/online_shopping_10_cats/online_shopping_10_cats.csv
events=../shared/data/taobao_sample/UserBehavior.csv

# Inputs: 2,000 reviews not in the training slice, and the sample's users (one request
# body each, and the same rows as files for `shopnet score`).
python3 - "$reviews" "$events" "$out" << 'PY'
import csv, json, sys, collections
reviews, events, out = sys.argv[1:]
rows = list(csv.DictReader(open(reviews, encoding="utf-8-sig")))
train, score = rows[::20][:3000], rows[1::20][:2000]
with open(f"{out}/train_reviews.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["cat", "label", "review"]); w.writeheader(); w.writerows(train)
with open(f"{out}/score_reviews.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["id", "review"])
    for i, r in enumerate(score): w.writerow([i, r["review"]])
with open(f"{out}/sentiment.bodies", "w") as f:
    for r in score:
        f.write(json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [r["review"]]}]}, ensure_ascii=False) + "\n")
users = collections.defaultdict(list)
for line in open(events):
    users[line.split(",")[0]].append(line)
# The batch path scores the same users' events, repeated under new ids (100 copies), so
# that it runs long enough to time.
with open(f"{out}/score_events.csv", "w") as f:
    for copy in range(100):
        for user, lines in users.items():
            for line in lines:
                f.write(f"{int(user) + copy * 10_000_000}," + line.split(",", 1)[1])
with open(f"{out}/intent.bodies", "w") as f:
    for lines in users.values():
        f.write(json.dumps({"inputs": [{"name": "events", "shape": [1], "datatype": "BYTES", "data": ["".join(lines)]}]}) + "\n")
PY

bundle() { # NAME CONFIG SETTINGS...: trains one epoch and exports
  local name=$1 config=$2; shift 2
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  "$BIN" train --config "$config" --out "$out/runs" --set train.epochs=1 "${sets[@]}" > "$out/$name.train.log" 2>&1
  local run; run=$(grep '^run ' "$out/$name.train.log" | awk '{ print $2 }')
  "$BIN" export --run "$run" --out "$out/bundles/$name" > /dev/null
  echo "$out/bundles/$name"
}
sentiment="${SENTIMENT_BUNDLE:-$(bundle sentiment_zh configs/sentiment_zh.toml "data.path=\"$out/train_reviews.csv\"")}"
intent="${INTENT_BUNDLE:-$(bundle intent configs/intent_taobao.toml)}"

cat > "$out/bodies.lua" << 'LUA'
-- Cycles through one JSON body per line of the file given after `--`; each thread stops
-- after MAX_REQUESTS / threads answers.
local bodies, next_body, answered, limit = {}, 0, 0, 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  next_body = math.random(#bodies)
  limit = math.floor(tonumber(args[2]) / tonumber(args[3]))
end
function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, bodies[next_body])
end
function response(status, headers, body)
  answered = answered + 1
  if answered >= limit then wrk.thread:stop() end
end
LUA

"$BIN" serve --bundle "$sentiment" --bundle "$intent" --port 0 --threads "$THREADS" > "$out/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do
  port=$(grep -o '127.0.0.1:[0-9]*' "$out/serve.log" | head -1 | cut -d: -f2 || true)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null && break
  sleep 0.2
done
[ -n "$port" ] || { cat "$out/serve.log" >&2; exit 1; }

printf "| model | clients | requests/s | p50 | p99 | non-2xx | socket errors |\n|---|---|---|---|---|---|---|\n"
for model in "$(basename "$sentiment")" "$(basename "$intent")"; do
  kind=sentiment; [ "$model" = "$(basename "$intent")" ] && kind=intent
  for clients in 1 8 64; do
    threads=$((clients < 2 ? 1 : 2))
    wrk -t "$threads" -c "$clients" -d "${DURATION}s" --timeout 30s --latency -s "$out/bodies.lua" \
      "http://127.0.0.1:$port/v2/models/$model/infer" -- "$out/$kind.bodies" "$MAX_REQUESTS" "$threads" > "$out/wrk.log"
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$out/wrk.log")
    p50=$(awk '$1 == "50%" { print $2 }' "$out/wrk.log")
    p99=$(awk '$1 == "99%" { print $2 }' "$out/wrk.log")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$out/wrk.log"); non2xx=${non2xx:-0}
    socket=$(awk '/Socket errors/ { sub(/.*Socket errors: /, ""); print }' "$out/wrk.log"); socket=${socket:-none}
    echo "| $kind | $clients | $rps | $p50 | $p99 | $non2xx | $socket |"
  done
done
peak=$(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$server_pid/status")
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""
echo "server peak memory (both models, whole process): $peak"

# The batch path over the same inputs.
for kind in sentiment intent; do
  if [ $kind = sentiment ]; then bundle=$sentiment input="$out/score_reviews.csv"; else bundle=$intent input="$out/score_events.csv"; fi
  start=$(date +%s.%N)
  rows=$("$BIN" score --run "$bundle" --input "$input" --output "$out/$kind.scores.csv" | awk '{ print $2 }')
  end=$(date +%s.%N)
  awk -v k=$kind -v n="$rows" -v s="$start" -v e="$end" 'BEGIN { printf "shopnet score (%s): %d rows in %.2f s = %.1f rows/s\n", k, n, e - s, n / (e - s) }'
done
