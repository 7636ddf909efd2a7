#!/usr/bin/env bash
# Run a command inside the project's virtual environment, building it first if needed.
#
# The environment lives outside the clone (the torch stack is several GB), in
#   ${SLIMCODEC_VENV_HOME:-$HOME/.cache/slimcodec/venvs}/<key>
# where <key> hashes requirements.lock, pyproject.toml and the Python version. When the key
# changes, a new environment is built from scratch; a half-built one (no .complete marker) is
# deleted and rebuilt. The project itself is installed editable from *this* clone, re-pointed
# whenever a different clone uses the same environment.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${SLIMCODEC_PYTHON:-python3}
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$(cat "$repo/requirements.lock" "$repo/pyproject.toml" <(echo "$pyver") | sha256sum | cut -c1-16)
home=${SLIMCODEC_VENV_HOME:-$HOME/.cache/slimcodec/venvs}
venv="$home/$key"

if [ ! -f "$venv/.complete" ]; then
  echo "with-venv: building $venv (first run for these dependencies; a few minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$home"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/requirements.lock" >&2
  touch "$venv/.complete"
fi

if [ "$(cat "$venv/.project" 2>/dev/null)" != "$repo" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$repo" >&2
  echo "$repo" > "$venv/.project"
fi

export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
cd "$repo"
exec "$@"
