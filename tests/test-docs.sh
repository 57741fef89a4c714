#!/bin/bash
# docs: the project carries its own specification. Every docs/NAME.md that the code, the scripts
# or the docs cite must exist in this repository, and every section cited as
# (docs/NAME.md, "Title") must be a heading of that file (case-insensitive, so a citation may
# lower-case the title as prose does). Fails naming the file and the citation.
#   tests/test-docs.sh SRCDIR
set -euo pipefail
src=${1:?usage: test-docs.sh SRCDIR}
cd "$src"
fail=0
files=$(git ls-files 2>/dev/null | grep -E '\.(c|h|cu|py|sh|md|build)$|^scripts/' | grep -v -e '^tests/fixtures/' -e '^tests/test-docs.sh$' || true)
[ -n "$files" ] || files=$(find . -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.py' -o -name '*.md' \) -not -path './tests/fixtures/*' -not -path './build*')
cited=0
while IFS= read -r hit; do
  file=${hit%%:*}
  doc=$(sed -E 's|.*(docs/[A-Za-z0-9_.-]+\.md).*|\1|' <<<"$hit")
  cited=$((cited + 1))
  if [ ! -f "$doc" ]; then
    echo "FAIL: $file cites $doc, which is not in the repository"; fail=1; continue
  fi
  # a quoted section right after the file name: (docs/x.md, "Title") or docs/x.md's "Title"
  sec=$(sed -nE 's|.*docs/[A-Za-z0-9_.-]+\.md(, \|.s )"([^"]+)".*|\2|p' <<<"$hit")
  if [ -n "$sec" ] && ! grep -qiE "^#+ .*${sec}" "$doc"; then
    echo "FAIL: $file cites section \"$sec\" of $doc, which has no such heading"; fail=1
  fi
done < <(grep -HoE 'docs/[A-Za-z0-9_.-]+\.md(, "[^"]+"|.s "[^"]+")?' $files 2>/dev/null)
[ "$cited" -gt 0 ] || { echo "FAIL: no citation of docs/ found (the test would check nothing)"; exit 1; }
# the spec the engine cites must be this project's, with the forward written out
grep -q '^## 2. The forward, exactly' docs/swiftkv.md || { echo "FAIL: docs/swiftkv.md lacks the forward"; fail=1; }
grep -rl 'docs/swiftkv.md' worker/engine.c model/model-config.h >/dev/null || { echo "FAIL: the engine does not cite docs/swiftkv.md"; fail=1; }
[ $fail = 0 ] && echo "docs: $cited citations of docs/ checked"
exit $fail
