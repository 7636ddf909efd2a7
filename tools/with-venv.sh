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

pip() {  # quiet pip; its full output is shown only when it fails
  local log="$venv.pip.log"
  if ! "$venv/bin/python" -m pip --disable-pip-version-check "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "with-venv: pip $* failed" >&2
    exit 1
  fi
}

if [ ! -f "$venv/.complete" ]; then
  echo "with-venv: building $venv (first run for these dependencies; a few minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$home"
  "$python" -m venv "$venv"
  pip install --upgrade pip
  pip install -r "$repo/requirements.lock"
  touch "$venv/.complete"
fi

# Two clones sharing one environment re-point it in turn; tests are unaffected either way,
# since `python -m pytest` puts the clone's own root first on sys.path.
# A clone made again at the same path lacks the compiled coder the install builds in place,
# and a pull can bring a newer coder than the one built: reinstall then too.
coder=$(compgen -G "$repo/slimcodec/bitstream/_rans*.so" | head -n 1 || true)
if [ "$(cat "$venv/.project" 2>/dev/null)" != "$repo" ] || [ -z "$coder" ] ||
   [ "$repo/slimcodec/bitstream/_rans.c" -nt "$coder" ]; then
  pip install --no-deps --no-build-isolation -e "$repo"
  echo "$repo" > "$venv/.project"
fi

# Environments of other dependency sets are several GB each: one that no clone has used for
# ${SLIMCODEC_VENV_KEEP_DAYS:-30} days is removed. Only complete ones (a half-built one may
# be in the making elsewhere) and never this one.
touch "$venv/.last-used"
for other in "$home"/*/; do
  other=${other%/}
  [ "$other" != "$venv" ] && [ -f "$other/.complete" ] || continue
  marker="$other/.last-used"
  [ -f "$marker" ] || marker="$other/.complete"
  if [ -n "$(find "$marker" -mtime +"${SLIMCODEC_VENV_KEEP_DAYS:-30}" 2>/dev/null)" ]; then
    echo "with-venv: removing $other (unused for ${SLIMCODEC_VENV_KEEP_DAYS:-30} days)" >&2
    rm -rf "$other" "$other.pip.log"
  fi
done

export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
exec "$@"
