#!/usr/bin/env bash
# Prepare a fresh Debian machine: apt packages (python3-venv, mosquitto, mosquitto-clients, openssl, systemd,
# protobuf-compiler; with the test extra nodejs, npm, chromium and chromium-driver; with the genicam extra Aravis'
# typelib and tools and what PyGObject builds with),
# the virtual environment .venv with edge_ad, its export, cases, sparkplug, opcua and genicam extras and the test
# tools, and Node-RED (pinned, in .node-red/, outside the venv) for the test that runs the Node-RED flow of
# docs/integration.md.
# Idempotent: a second run only checks. Set EDGE_AD_EXTRAS=test for a runtime-only (torch-free) install.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PYTHON="${PYTHON:-python3}"
EXTRAS="${EDGE_AD_EXTRAS:-export,cases,sparkplug,opcua,genicam,console,test}"
# the newest Node-RED for Node.js 20 (and 18, Debian bookworm's: it asks for >= 18.5); 5.x needs Node.js >= 22.9
NODE_RED_VERSION="4.1.15"

apt_install() {
  echo "==> apt-get install $*"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v "$PYTHON" >/dev/null 2>&1 || missing+=(python3)
if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the TLS tests make their own certificates
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)  # the unit files are verified by the tests
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)  # decodes Sparkplug payloads in the tests
TESTS=0; [[ ",$EXTRAS," == *",test,"* ]] && TESTS=1  # Node-RED only where the tests run
if [ "$TESTS" = 1 ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)  # runs Node-RED in the docs test
  command -v npm >/dev/null 2>&1 || missing+=(npm)  # installs it
  # the console's browser tests drive a real headless Chromium (selenium; Playwright's browser download is not used)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
fi
if [[ ",$EXTRAS," == *",genicam,"* ]]; then  # GigE Vision / USB3 Vision cameras through Aravis (docs/cameras.md)
  compgen -G "/usr/lib/*/girepository-1.0/Aravis-0.8.typelib" >/dev/null || missing+=(gir1.2-aravis-0.8)
  command -v arv-fake-gv-camera-0.8 >/dev/null 2>&1 || missing+=(aravis-tools)  # the simulated camera of the tests
  # PyGObject < 3.51 is built from source against girepository-1.0 (Debian 12 has no girepository-2.0)
  pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null || missing+=(libgirepository1.0-dev libcairo2-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  "$PYTHON" -c "import sysconfig, os; assert os.path.exists(sysconfig.get_paths()['include'] + '/Python.h')" \
    >/dev/null 2>&1 || missing+=(python3-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [[ " ${missing[*]} " == *" python3 "* ]]; then missing+=(python3-venv); fi
  apt_install "${missing[@]}"
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info[:2] != (3, 11):
    print(f"warning: Python {sys.version.split()[0]}; the pinned torch 2.14.1 is tested with 3.11", file=sys.stderr)
PY

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.edge-ad-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> pip install -e .[$EXTRAS] (the export extra brings torch: several GB, a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi
node_red=".node-red/node_modules/node-red/package.json"
if [ "$TESTS" = 1 ] && [ "$(node -p 'require(process.argv[1]).version' "$PWD/$node_red" 2>/dev/null)" != "$NODE_RED_VERSION" ]; then
  echo "==> npm install node-red@$NODE_RED_VERSION into .node-red/ (about 280 packages, 120 MB, half a minute)"
  npm install --prefix .node-red --no-save --no-audit --no-fund --loglevel=error "node-red@$NODE_RED_VERSION"
fi
echo "==> environment ready: $(.venv/bin/edge-ad --help >/dev/null && echo .venv/bin/edge-ad)"
