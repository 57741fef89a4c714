#!/bin/bash
# test-programs: every program answers --version (the meson project version, plus the git
# revision when built from a checkout) and --help (a usage text on stdout) with exit 0, and an
# unknown option with a non-zero exit; skv-mkmodel shows its progress on a terminal for a big
# checkpoint and stays quiet on a pipe.
#   tests/test-programs.sh SRCDIR VERSION PROGRAM...
set -euo pipefail
src=$1 version=$2
shift 2
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /tmp/skv-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# the revision the header must carry: this checkout's HEAD, when there is one
rev=""
if command -v git >/dev/null && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  rev=$(git -C "$src" rev-parse --short=12 HEAD)
fi

mkmodel=""
for prog in "$@"; do
  name=$(basename "$prog")
  [ "$name" = skv-mkmodel ] && mkmodel=$prog
  "$prog" --version >"$tmp/out" 2>"$tmp/err" || fail "$name --version exits $?"
  [ -s "$tmp/err" ] && fail "$name --version wrote to stderr: $(cat "$tmp/err")"
  first=$(head -1 "$tmp/out")
  if [ -n "$rev" ]; then
    [[ "$first" =~ ^$name\ ${version//./\\.}\ \(git\ $rev(-dirty)?\)$ ]] ||
      fail "$name --version says '$first', not '$name $version (git ${rev}[-dirty])'"
  else
    [ "$first" = "$name $version" ] || fail "$name --version says '$first', not '$name $version'"
  fi
  "$prog" --help >"$tmp/out" 2>"$tmp/err" || fail "$name --help exits $?"
  [ -s "$tmp/err" ] && fail "$name --help wrote to stderr: $(cat "$tmp/err")"
  grep -qi "^usage: *$name " "$tmp/out" || fail "$name --help has no 'usage: $name' line: $(head -3 "$tmp/out")"
  grep -q -- "--version" "$tmp/out" || fail "$name --help does not mention --version"
  if "$prog" --no-such-option >/dev/null 2>&1; then fail "$name accepts --no-such-option"; fi
  echo "ok: $name: $first"
done

# skv-mkmodel's progress: a 0.15 GB checkpoint (over the 128 MiB threshold) on a pseudo-terminal
# (script(1)) shows "N / 0.15 GB (P%)" up to 100%; the same on a pipe writes nothing to stderr
[ -n "$mkmodel" ] || fail "skv-mkmodel is not among the programs"
big=(--preset tiny --layers 2 --hidden 2048 --intermediate 4096 --heads 16 --kv-heads 4 --head-dim 128 --force)
if command -v script >/dev/null; then
  script -qec "$(printf '%q ' "$mkmodel" "${big[@]}" "$tmp/big")" /dev/null | tr '\r' '\n' >"$tmp/tty"
  grep -Eq '^skv-mkmodel: 0\.[0-9]+ / 0\.15 GB \(([1-9]|[1-9][0-9])\.[0-9]%\)' "$tmp/tty" ||
    fail "no progress line below 100% on a terminal: $(head -c 300 "$tmp/tty")"
  grep -q '^skv-mkmodel: 0.15 / 0.15 GB (100.0%)' "$tmp/tty" || fail "progress does not end at 100%"
  echo "ok: skv-mkmodel shows progress on a terminal"
else
  echo "note: no script(1): progress on a terminal not checked"
fi
"$mkmodel" "${big[@]}" "$tmp/big" >"$tmp/out" 2>"$tmp/err" </dev/null || fail "skv-mkmodel failed"
[ -s "$tmp/err" ] && fail "skv-mkmodel wrote progress to a pipe: $(head -c 200 "$tmp/err")"
grep -q "0.15 GB in 1 file" "$tmp/out" || fail "skv-mkmodel's summary: $(cat "$tmp/out")"
# and a tiny checkpoint shows none even on a terminal
if command -v script >/dev/null; then
  script -qec "$(printf '%q ' "$mkmodel" --preset tiny --force "$tmp/tiny")" /dev/null >"$tmp/tty"
  grep -q "GB (" "$tmp/tty" && fail "progress shown for the tiny model"
fi
echo "ok: skv-mkmodel quiet on a pipe and for a tiny model"
