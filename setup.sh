#!/usr/bin/env bash
# Set up einforge from scratch: the Icarus Verilog simulator (Debian package) and a virtual
# environment in .venv with einforge installed from a freshly built wheel (what users get), plus
# everything its tests need. `./setup.sh --editable` installs the checkout in place instead, for
# working on einforge itself.
set -euo pipefail
cd "$(dirname "$0")"
mode=wheel
[ "${1:-}" = "--editable" ] && mode=editable
if ! command -v iverilog >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends iverilog
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$mode" = editable ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  rm -rf dist
  .venv/bin/python -m pip wheel -q --no-deps -w dist .
  wheel=$(ls dist/einforge-*.whl)
  .venv/bin/python -m pip uninstall -q -y einforge >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q "${wheel}[dev]"
fi
echo "einforge is set up ($mode): .venv/bin/einforge --help"
