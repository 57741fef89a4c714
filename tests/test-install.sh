#!/bin/bash
# test-install: `meson install` of this build into a scratch DESTDIR puts every file where this
# build's options say, nothing outside the prefix (or, for the /usr prefix, outside /etc and
# systemd.pc's own directories), and what the files name exists there: skvd.service's
# ExecStart/ExecReload binaries and its --config file, and skvd's built-in skv-worker path.
#   tests/test-install.sh MESON BUILDDIR
set -euo pipefail
meson=$1 build=$2
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /tmp/skv-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

opt() { "$meson" introspect "$build" --buildoptions |
  python3 -c "import json,sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name']=='$1'))"; }
abs() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
prefix=$(opt prefix)
sysconfdir=$(abs "$(opt sysconfdir)")
sbindir=$(abs "$(opt sbindir)") bindir=$(abs "$(opt bindir)") libexecdir=$(abs "$(opt libexecdir)")
# directories set by hand (-Dsystemdsystemunitdir=... and the like) may lie anywhere
explicit=()
for o in systemdsystemunitdir sysusersdir tmpfilesdir; do v=$(opt $o); [ -n "$v" ] && explicit+=("$v"); done
echo "prefix $prefix, sysconfdir $sysconfdir${explicit[*]:+, set by hand: ${explicit[*]}}"

"$meson" install -C "$build" --destdir "$tmp/root" --no-rebuild --quiet >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; fail "meson install failed"; }
root=$tmp/root
in_root() { [ -e "$root$1" ] || fail "$1 is not installed (files: $(cd "$root" && find . -type f | head -50))"; }

# every file under the prefix; with /usr, also /etc and the /lib/systemd that systemd.pc names
while IFS= read -r f; do
  f=${f#.}
  for e in "${explicit[@]}"; do [[ $f == "$e"/* ]] && continue 2; done
  case $f in
    "$prefix"/*) ;;
    "$sysconfdir"/*) ;;
    /lib/systemd/system/*) [ "$prefix" = /usr ] || fail "$f: outside the prefix $prefix" ;;
    *) fail "$f: outside the prefix $prefix and sysconfdir $sysconfdir" ;;
  esac
done < <(cd "$root" && find . -type f -o -type l)

in_root "$sysconfdir/swiftkv/skvd.ini"
in_root "$sbindir/skvd"
in_root "$libexecdir/skv-worker"
[ "$prefix" = /usr ] && [ "$sysconfdir" != /etc ] && fail "--prefix=/usr but sysconfdir is $sysconfdir, not /etc"

# the unit names what was installed
svc=$(cd "$root" && find . -name skvd.service -path '*/systemd/system/*' | head -1)
[ -n "$svc" ] || fail "no skvd.service installed (systemd.pc missing and no -Dsystemdsystemunitdir?)"
exec_start=$(sed -n 's/^ExecStart=//p' "$root/$svc")
read -r bin _ config <<<"$exec_start"
in_root "$bin"
in_root "$config"
[ "$config" = "$sysconfdir/swiftkv/skvd.ini" ] || fail "ExecStart's --config is $config"
reload=$(sed -n 's/^ExecReload=\([^ ]*\).*/\1/p' "$root/$svc")
[ "$reload" = "$bindir/skvctl" ] || fail "ExecReload runs $reload, not $bindir/skvctl"
in_root "$reload"
[ -e "$root/$(dirname "$svc")/skvd.socket" ] || fail "skvd.socket is not beside skvd.service"
for d in sysusers.d tmpfiles.d; do
  c=$(cd "$root" && find . -path "*/$d/swiftkv.conf" | head -1)
  [ -n "$c" ] || fail "no $d/swiftkv.conf installed"
done
# skvd's built-in skv-worker path is the installed one
grep -q -a "$libexecdir/skv-worker" "$root$sbindir/skvd" || fail "skvd does not look for $libexecdir/skv-worker"
echo "ok: installed under $prefix: $(cd "$root" && find . -type f | wc -l) files, unit $svc"
