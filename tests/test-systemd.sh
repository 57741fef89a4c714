#!/bin/bash
# test-systemd: the units in systemd/ pass `systemd-analyze verify` (offline: no systemd as
# PID 1 needed, which is how CI runs) with the binaries' paths pointed at the build, their
# Documentation= man pages resolve to docs/man, the sysusers and tmpfiles snippets apply to an
# empty root, and the names the files share agree: socket paths (units, etc/skvd.ini, skvctl's
# default), socket groups (units, sysusers, skvd.ini), file descriptor names.
#   tests/test-systemd.sh SRCDIR BUILD_SERVICE CONFIGURED_BINDIR CONFIGURED_SBINDIR SKVD SKVCTL \
#       [BUILD_HTTP_SERVICE SKV_HTTP]
# With the last two, skv-http.service and skv-http.socket are verified the same way, and their
# sandbox checked: network allowed there, never in skvd.service; no devices; its groups exist.
# Exit 77 (skip) when systemd-analyze is absent or skvd is not part of the build.
set -euo pipefail
src=$1 service=$2 bindir=$3 sbindir=$4 skvd=$5 skvctl=$6 http_service=${7:-} skv_http=${8:-}

command -v systemd-analyze >/dev/null || { echo "systemd-analyze is not installed"; exit 77; }
if [ -z "$skvd" ] || [ ! -x "$skvd" ]; then echo "skvd is not part of this build"; exit 77; fi
[ -x "$skvctl" ] || { echo "FAIL: no skvctl at $skvctl"; exit 1; }

tmp=$(mktemp -d /tmp/skv-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# --- the configured skvd.service: every @VAR@ filled, binaries under the configured bindir
grep -Eq '@[A-Z_]+@' "$service" && fail "$service still has an @VAR@: $(grep -En '@[A-Z_]+@' "$service")"
grep -q "^ExecStart=$sbindir/skvd --config " "$service" || fail "ExecStart does not run $sbindir/skvd"
grep -q "^ExecReload=$bindir/skvctl reload --wait$" "$service" || fail "ExecReload is not skvctl reload --wait"

# --- systemd-analyze verify, with the binaries of this build and our man pages
mkdir -p "$tmp/units" "$tmp/man/man5" "$tmp/man/man8"
sed -e "s|^ExecStart=$sbindir/skvd |ExecStart=$skvd |" -e "s|^ExecReload=$bindir/skvctl |ExecReload=$skvctl |" \
  "$service" >"$tmp/units/skvd.service"
cp "$src"/systemd/skvd.socket "$src"/systemd/skvd-admin.socket "$src"/systemd/skvd-nvidia.service "$tmp/units/"
cp "$src"/docs/man/*.5 "$tmp/man/man5/"
cp "$src"/docs/man/*.8 "$tmp/man/man8/"
# Documentation=man:... is checked with man(1) when it is there (scripts/setup installs man-db)
man_check=--man=yes
command -v man >/dev/null || { man_check=--man=no; echo "note: no man(1): Documentation= not checked"; }
(
  cd "$tmp/units"
  if ! MANPATH="$tmp/man" systemd-analyze verify $man_check skvd.service skvd.socket skvd-admin.socket \
      skvd-nvidia.service >"$tmp/verify.log" 2>&1; then
    cat "$tmp/verify.log"; fail "systemd-analyze verify failed"
  fi
  # warnings (an unknown or misspelt key, a bad value) do not change the exit status: none allowed
  if [ -s "$tmp/verify.log" ]; then cat "$tmp/verify.log"; fail "systemd-analyze verify warned"; fi
)
echo "ok: systemd-analyze verify"

# a check that the check works: a misspelt key must be reported
sed 's/^KillMode=mixed/KillMode=mixd/' "$tmp/units/skvd.service" >"$tmp/units/broken.service"
(cd "$tmp/units" && systemd-analyze verify --man=no broken.service skvd.socket skvd-admin.socket \
   skvd-nvidia.service 2>&1 | grep -q "kill mode") || fail "verify did not notice KillMode=mixd"

# --- names shared between files
val() { sed -n "s/^$1=//p" "$2" | head -1; }
ini() { # section key -> value in etc/skvd.ini
  awk -v s="[$1]" -v k="$2" '/^\[/{in_s=($0==s)} in_s && $1==k {sub(/^[^=]*= ?/, ""); print; exit}' \
    "$src/etc/skvd.ini"
}
client_sock=$(val ListenSequentialPacket "$src/systemd/skvd.socket")
admin_sock=$(val ListenStream "$src/systemd/skvd-admin.socket")
[ "$client_sock" = "$(ini server socket)" ] || fail "skvd.socket listens on $client_sock, skvd.ini says $(ini server socket)"
[ "$admin_sock" = "$(ini server admin_socket)" ] || fail "skvd-admin.socket listens on $admin_sock, skvd.ini says $(ini server admin_socket)"
grep -q "SKVD_DEFAULT_ADMIN_SOCKET \"$admin_sock\"" "$src/daemon/config.h" || fail "skvctl's default is not $admin_sock"
grep -q "SKVD_DEFAULT_SOCKET \"$client_sock\"" "$src/daemon/config.h" || fail "SKVD_DEFAULT_SOCKET is not $client_sock"
[ "$(val FileDescriptorName "$src/systemd/skvd.socket")" = client ] || fail "skvd.socket's fd is not named client"
[ "$(val FileDescriptorName "$src/systemd/skvd-admin.socket")" = admin ] || fail "skvd-admin.socket's fd is not named admin"
[ "$(val SocketGroup "$src/systemd/skvd.socket")" = "$(ini server allow_group)" ] || fail "client socket group differs from allow_group"
[ "$(val SocketGroup "$src/systemd/skvd-admin.socket")" = "$(ini server admin_group)" ] || fail "admin socket group differs from admin_group"
# the sockets' directory is created by tmpfiles and is not skvd's RuntimeDirectory (systemd
# removes that on stop, under the listening sockets)
sockdir=$(dirname "$client_sock")
[ "$(dirname "$admin_sock")" = "$sockdir" ] || fail "the sockets are in different directories"
grep -Eq "^d +$sockdir " "$src/systemd/tmpfiles.d/swiftkv.conf" || fail "tmpfiles.d does not create $sockdir"
rtdir=/run/$(val RuntimeDirectory "$tmp/units/skvd.service")
[ "$rtdir" != "$sockdir" ] || fail "the sockets are in skvd's RuntimeDirectory ($rtdir)"
grep -q "^ReadWritePaths=-$sockdir$" "$tmp/units/skvd.service" || fail "skvd.service cannot write $sockdir"
grep -q "^ExecStart=-/usr/bin/nvidia-modprobe -u -c0$" "$src/systemd/skvd-nvidia.service" || fail "skvd-nvidia.service"
grep -q "^DynamicUser" "$tmp/units/skvd.service" && fail "DynamicUser= implies RemoveIPC="
echo "ok: shared names agree"

# --- a configuration that cannot work ends restarts: skvd exits with SKV_EXIT_CONFIG
# (shm/control.h), and the unit's RestartPreventExitStatus= names it
config_status=$(sed -n 's/^#define SKV_EXIT_CONFIG \([0-9]*\).*/\1/p' "$src/shm/control.h")
[ -n "$config_status" ] || fail "no SKV_EXIT_CONFIG in shm/control.h"
grep -Eq "^RestartPreventExitStatus=(.* )?$config_status( |$)" "$tmp/units/skvd.service" ||
  fail "RestartPreventExitStatus= does not name $config_status"
printf '[engine]\nreplicas = 0\n' >"$tmp/bad.ini"
st=0; "$skvd" --check-config "$tmp/bad.ini" >/dev/null 2>&1 || st=$?
[ "$st" = "$config_status" ] || fail "skvd --check-config of a bad file exited $st, not $config_status"
echo "ok: a configuration error exits $config_status, which stops systemd's restarts"
# --- skv-http.service and skv-http.socket
if [ -n "$http_service" ]; then
  [ -x "$skv_http" ] || fail "no skv-http at $skv_http"
  grep -Eq '@[A-Z_]+@' "$http_service" && fail "$http_service still has an @VAR@"
  grep -q "^ExecStart=$sbindir/skv-http --config " "$http_service" || fail "ExecStart does not run $sbindir/skv-http"
  sed -e "s|^ExecStart=$sbindir/skv-http |ExecStart=$skv_http |" "$http_service" >"$tmp/units/skv-http.service"
  cp "$src/systemd/skv-http.socket" "$tmp/units/"
  (
    cd "$tmp/units"
    if ! MANPATH="$tmp/man" systemd-analyze verify $man_check skv-http.service skv-http.socket \
        >"$tmp/verify-http.log" 2>&1 || [ -s "$tmp/verify-http.log" ]; then
      cat "$tmp/verify-http.log"; fail "systemd-analyze verify skv-http.service skv-http.socket"
    fi
  )
  u="$tmp/units/skv-http.service"
  grep -q "^IPAddressDeny=any$" "$tmp/units/skvd.service" || fail "skvd.service lost IPAddressDeny=any"
  grep -q "^RestrictAddressFamilies=AF_UNIX$" "$tmp/units/skvd.service" || fail "skvd.service may use the network"
  grep -q "^IPAddressDeny" "$u" && fail "skv-http.service denies the network it serves"
  grep -q "^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$" "$u" || fail "skv-http.service address families"
  grep -q "^PrivateDevices=yes$" "$u" || fail "skv-http.service sees devices (it needs no GPU)"
  grep -q "^DeviceAllow" "$u" && fail "skv-http.service allows a device"
  grep -q "^DynamicUser=yes$" "$u" || fail "skv-http.service does not run as a dynamic user"
  grep -q "^Type=notify$" "$u" && grep -q "^WatchdogSec=" "$u" || fail "skv-http.service: Type=notify with a watchdog"
  for g in $(val SupplementaryGroups "$u"); do
    grep -Eq "^g +$g " "$src/systemd/sysusers.d/swiftkv.conf" || fail "sysusers.d does not create group $g (skv-http.service)"
  done
  # the socket unit and the shipped skv-http.ini listen on the same address
  http_listen=$(awk '/^\[http\]/{s=1} s && $1=="listen" {print $3; exit}' "$src/etc/skv-http.ini")
  [ "$(val ListenStream "$src/systemd/skv-http.socket")" = "$http_listen" ] || fail "skv-http.socket and skv-http.ini listen differ"
  # and skv-http.ini's skvd sockets are skvd's
  http_ini() { awk -v s="[$1]" -v k="$2" '/^\[/{in_s=($0==s)} in_s && $1==k {sub(/^[^=]*= ?/, ""); print; exit}' "$src/etc/skv-http.ini"; }
  [ "$(http_ini skvd socket)" = "$client_sock" ] || fail "skv-http.ini [skvd] socket is not $client_sock"
  [ "$(http_ini skvd admin_socket)" = "$admin_sock" ] || fail "skv-http.ini [skvd] admin_socket is not $admin_sock"
  echo "ok: skv-http.service and skv-http.socket"
fi

# --- sysusers and tmpfiles on an empty root
if [ "$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
  root="$tmp/root"
  mkdir -p "$root/etc"
  systemd-sysusers --root="$root" "$src/systemd/sysusers.d/swiftkv.conf" >/dev/null 2>&1 || fail "systemd-sysusers"
  for g in skvd "$(ini server allow_group)" "$(ini server admin_group)"; do
    grep -q "^$g:" "$root/etc/group" || fail "sysusers.d does not create group $g"
  done
  uid=$(awk -F: '$1=="skvd"{print $3}' "$root/etc/passwd")
  [ -n "$uid" ] || fail "sysusers.d does not create user skvd"
  systemd-tmpfiles --root="$root" --create "$src/systemd/tmpfiles.d/swiftkv.conf" >/dev/null 2>&1 || fail "systemd-tmpfiles"
  [ "$(stat -c '%u %a' "$root$sockdir")" = "$uid 755" ] || fail "$sockdir is $(stat -c '%u %a' "$root$sockdir"), want $uid 755"
  [ -d "$root/var/lib/swiftkv" ] || fail "tmpfiles.d does not create /var/lib/swiftkv"
  echo "ok: sysusers.d and tmpfiles.d"
else
  echo "note: not root: sysusers.d and tmpfiles.d not applied"
fi
