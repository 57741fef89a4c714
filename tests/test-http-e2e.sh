#!/bin/sh
# test-http-e2e.sh: skv-http end to end with the official openai client (tests/test-http-e2e.py).
# The client comes from a venv: $SKV_PYENV when set, else PYENV_DIR, made there by
# scripts/setup-pyenv (pip, from PyPI) when it lacks the packages. Exit 77 (skip) only when
# no such venv can be made (no network, no python3-venv).
#   test-http-e2e.sh SRCDIR SKV_MKMODEL PYENV_DIR   ($SKVD, $SKV_WORKER, $SKVCTL, $SKV_HTTP, $SKV_CLI)
set -eu
src=$1 mkmodel=$2 pyenv=${SKV_PYENV:-$3}
: "${SKVD:?}" "${SKV_WORKER:?}" "${SKVCTL:?}" "${SKV_HTTP:?}" "${SKV_CLI:?}"
export SKVD SKV_WORKER SKVCTL SKV_HTTP SKV_CLI
command -v curl >/dev/null || { echo "curl is not installed (scripts/setup installs it)"; exit 1; }
if ! "$src/scripts/setup-pyenv" "$pyenv"; then
  echo "no Python venv with openai and prometheus-client at $pyenv (scripts/setup-pyenv failed): skipped"
  exit 77
fi
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$mkmodel" --preset tiny --swiftkv-layers 2 "$d/m" >/dev/null
exec "$pyenv/bin/python" "$src/tests/test-http-e2e.py" "$d/m"
