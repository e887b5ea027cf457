#!/usr/bin/env bash
# The whole product once, end to end, on this machine:
#   synthetic data -> PatchCore training (offline) -> FP32 + INT8 OpenVINO bundle in models/
#   -> private mosquitto -> edge-ad daemon on a replayed camera -> verdicts shown by mosquitto_sub.
# Everything it starts is stopped on exit. Work files go to demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

EDGE_AD=.venv/bin/edge-ad
DEMO=demo
mkdir -p "$DEMO"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "==> 1/4 synthetic dataset (MVTec layout) in $DEMO/data"
rm -rf "$DEMO/data"
$EDGE_AD make-dataset "$DEMO/data" --categories brick gravel

echo "==> 2/4 train PatchCore on brick/train/good and export the bundle to models/, signed (recipe calibration/demo-brick.yaml, no network)"
[ -f "$DEMO/keys/workstation.key" ] || $EDGE_AD keys new "$DEMO/keys" --name workstation
$EDGE_AD export --recipe calibration/demo-brick.yaml --sign-key "$DEMO/keys/workstation.key"

echo "==> 3/4 private mosquitto and a subscriber"
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$DEMO/mosquitto.conf"
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$MOSQUITTO" -c "$DEMO/mosquitto.conf" > "$DEMO/mosquitto.log" 2>&1 &
pids+=($!)
.venv/bin/python - "$PORT" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("mosquitto did not start; see demo/mosquitto.log")
PY
mosquitto_sub -h 127.0.0.1 -p "$PORT" -t 'edge_ad/#' -v -q 1 > >(tee "$DEMO/verdicts.txt") &
pids+=($!)
sleep 0.5

echo "==> 4/4 daemon on a replay camera (brick test images: good and defects)"
rm -rf "$DEMO/replay" && mkdir -p "$DEMO/replay"
for dir in "$DEMO"/data/brick/test/*/; do
  kind=$(basename "$dir")
  for f in "$dir"*.png; do cp "$f" "$DEMO/replay/${kind}_$(basename "$f")"; done
done
cat > "$DEMO/station.yaml" <<YAML
station: demo-line1
camera:
  source: replay        # a folder of images, replayed in name order
  fps: 10
model:
  path: ../models/brick # the active version of the bundle just exported
  variant: auto        # commissioned at first start: the fastest variant whose verdicts agree with FP32 here
  device: CPU
mqtt:
  host: 127.0.0.1
  port: $PORT
service:
  state_dir: state
cases:
  enabled: true         # every NG frame remembered for 'edge-ad cases similar' (docs/cases.md)
security:
  trusted_keys: [keys/workstation.pub]   # only bundles this key signed are judged with (docs/operations.md)
YAML
$EDGE_AD run --config "$DEMO/station.yaml"
sleep 1

.venv/bin/python - "$DEMO/verdicts.txt" <<'PY'
import collections, json, sys
rows = [line.split(" ", 1) for line in open(sys.argv[1]) if " " in line]
verdicts = [json.loads(p) for t, p in rows if t.endswith("/verdict")]
tally = collections.defaultdict(collections.Counter)
for v in verdicts:
    tally[v["frame"]["origin"].split("_")[0]][v["verdict"]] += 1
print(f"\n{len(verdicts)} verdicts received by mosquitto_sub:")
for kind, counts in sorted(tally.items()):
    print(f"  {kind:8s} OK {counts['OK']:3d}   NG {counts['NG']:3d}")
PY
echo
echo "==> have we seen this defect before? (edge-ad cases similar, docs/cases.md)"
query=$(ls "$DEMO"/replay/scratch_*.png | head -1)
$EDGE_AD cases similar "$query" -k 3 --sheet "$DEMO/similar.png" --config "$DEMO/station.yaml"
echo
echo "==> the station screen: which variant and precision ran on this PC, and why (docs/commissioning.md)"
$EDGE_AD status --config "$DEMO/station.yaml"
echo "bundle: models/brick/$(readlink models/brick/active)   config: $DEMO/station.yaml   messages: $DEMO/verdicts.txt"
if .venv/bin/python -c "import fastapi, argon2, uvicorn" 2>/dev/null; then  # the console extra is installed
  url=$(.venv/bin/python -c 'import sys; from edge_ad.config import load_config; print(load_config(sys.argv[1]).console.url)' "$DEMO/station.yaml")
  echo
  echo "==> technician console (docs/console.md): add a user, start it (next to 'edge-ad run'), open it in a browser"
  echo "    $EDGE_AD console-user add --config $DEMO/station.yaml tech --role technician"
  echo "    $EDGE_AD console --config $DEMO/station.yaml"
  echo "console: $url"
fi
