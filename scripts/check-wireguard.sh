#!/usr/bin/env bash
# Checks that userspace WireGuard (wireguard-go + wg) works on this machine. Run as root.
#
# It builds a private two-node WireGuard link that never touches the host's network:
#   namespace gmchk-<pid>-a  [wgchk<pid>a 10.254.2.1] --(UDP over veth 10.254.1.1 <-> 10.254.1.2)-- [wgchk<pid>b 10.254.2.2]  namespace gmchk-<pid>-b
# starts one wireguard-go per namespace, configures keys/peers with `wg set`, waits for the handshake,
# sends one UDP datagram through the tunnel (when python3 is available) and prints `wg show`.
# All traffic stays inside the two namespaces it created.
#
# Cleanup (trap on EXIT, also on failure or Ctrl-C) only touches what this run created, by PID / name:
# the wireguard-go PIDs it started, its interfaces, its control sockets and its two namespaces.
set -euo pipefail

log() { echo "gpumesh setup: [check-wireguard] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (needs network namespaces and /dev/net/tun)"
for cmd in ip wg wireguard-go; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found; run scripts/setup-system.sh first"
done
[ -c /dev/net/tun ] || die "/dev/net/tun is missing (wireguard-go needs a TUN device)"

id="$$"
ns_a="gmchk-$id-a"
ns_b="gmchk-$id-b"
if_a="wgchk${id}a" # interface names are limited to 15 characters: 5 + up to 7 (pid_max 4194304) + 1
if_b="wgchk${id}b"
veth_a="gmva$id"
veth_b="gmvb$id"
under_a=10.254.1.1 # veth underlay; exists only inside our two namespaces (no link to the host's network)
under_b=10.254.1.2
tun_a=10.254.2.1 # WireGuard tunnel addresses; also only inside our namespaces
tun_b=10.254.2.2
port_a=51820
port_b=51821
sock_dir=/var/run/wireguard # wireguard-go's control (UAPI) socket: $sock_dir/<interface>.sock
sock_dir_existed=0
[ -d "$sock_dir" ] && sock_dir_existed=1

work="$(mktemp -d /tmp/gmchk-wg.XXXXXX)"
pids=()
created_ns=()

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local pid ns ifc
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && { log "wireguard-go pid $pid ignored SIGTERM; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null; }
    fi
    wait "$pid" 2>/dev/null
  done
  for ifc in "$if_a:$ns_a" "$if_b:$ns_b"; do
    ns="${ifc#*:}"; ifc="${ifc%%:*}"
    ip netns list 2>/dev/null | grep -qw "^$ns" && ip -n "$ns" link del "$ifc" 2>/dev/null
    rm -f "$sock_dir/$ifc.sock" "$sock_dir/$ifc.name"
  done
  for ns in "${created_ns[@]}"; do
    ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
  done
  # Remove the socket directory only if this run created it and nothing else lives there.
  [ "$sock_dir_existed" -eq 1 ] || rmdir "$sock_dir" 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/*.log; do
      [ -s "$f" ] && { log "--- $(basename "$f") ---"; sed 's/^/    /' "$f" >&2; }
    done
  fi
  rm -rf "$work"
  if [ "$rc" -eq 0 ]; then log "cleaned up (namespaces, interfaces, wireguard-go pids ${pids[*]:-none})"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "creating namespaces $ns_a and $ns_b"
ip netns add "$ns_a"; created_ns+=("$ns_a")
ip netns add "$ns_b"; created_ns+=("$ns_b")
ip -n "$ns_a" link set lo up
ip -n "$ns_b" link set lo up
ip -n "$ns_a" link add "$veth_a" type veth peer name "$veth_b" netns "$ns_b"
ip -n "$ns_a" addr add "$under_a/24" dev "$veth_a"
ip -n "$ns_b" addr add "$under_b/24" dev "$veth_b"
ip -n "$ns_a" link set "$veth_a" up
ip -n "$ns_b" link set "$veth_b" up

start_wg() { # $1 namespace, $2 interface
  # WG_PROCESS_FOREGROUND=1 (like -f) keeps wireguard-go in the foreground, so $! is its PID
  # (`ip netns exec` execs the command, it does not fork); it also silences the
  # "not required because this kernel has first class support" banner.
  WG_PROCESS_FOREGROUND=1 LOG_LEVEL=verbose ip netns exec "$1" wireguard-go -f "$2" >"$work/$2.log" 2>&1 &
  pids+=("$!")
  log "started wireguard-go for $2 in $1 (pid $!)"
}
start_wg "$ns_a" "$if_a"
start_wg "$ns_b" "$if_b"

wait_for_socket() { # $1 interface, $2 pid
  local _
  for _ in $(seq 1 100); do
    [ -S "$sock_dir/$1.sock" ] && return 0
    kill -0 "$2" 2>/dev/null || die "wireguard-go for $1 (pid $2) exited early"
    sleep 0.1
  done
  die "control socket $sock_dir/$1.sock did not appear within 10 s"
}
wait_for_socket "$if_a" "${pids[0]}"
wait_for_socket "$if_b" "${pids[1]}"
for pid in "${pids[@]}"; do
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "wireguard-go" ] || die "pid $pid is not wireguard-go"
done

(umask 077; wg genkey >"$work/a.key"; wg genkey >"$work/b.key")
pub_a="$(wg pubkey <"$work/a.key")"
pub_b="$(wg pubkey <"$work/b.key")"

log "configuring keys and peers with wg set"
ip netns exec "$ns_a" wg set "$if_a" private-key "$work/a.key" listen-port "$port_a" \
  peer "$pub_b" endpoint "$under_b:$port_b" allowed-ips "$tun_b/32" persistent-keepalive 1
ip netns exec "$ns_b" wg set "$if_b" private-key "$work/b.key" listen-port "$port_b" \
  peer "$pub_a" endpoint "$under_a:$port_a" allowed-ips "$tun_a/32" persistent-keepalive 1
ip -n "$ns_a" addr add "$tun_a/24" dev "$if_a"
ip -n "$ns_b" addr add "$tun_b/24" dev "$if_b"
ip -n "$ns_a" link set "$if_a" up
ip -n "$ns_b" link set "$if_b" up

log "waiting for the WireGuard handshake"
handshake=0
for _ in $(seq 1 100); do
  hs="$(ip netns exec "$ns_a" wg show "$if_a" latest-handshakes | awk '{print $2}')"
  if [ -n "$hs" ] && [ "$hs" != "0" ]; then handshake=1; break; fi
  sleep 0.1
done
[ "$handshake" -eq 1 ] || die "no handshake between $if_a and $if_b within 10 s"
log "handshake completed"

if command -v python3 >/dev/null 2>&1; then
  log "sending a UDP datagram through the tunnel ($tun_a -> $tun_b:9999)"
  ip netns exec "$ns_b" timeout 10 python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
s.settimeout(8)
data, addr = s.recvfrom(100)
print(data.decode(), "from", addr[0])
' "$tun_b" >"$work/udp.out" 2>"$work/udp.log" &
  rx_pid=$!
  sleep 0.5
  for _ in 1 2 3; do
    ip netns exec "$ns_a" timeout 5 python3 -c '
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"gpumesh-wg-ok", (sys.argv[1], 9999))
' "$tun_b" || true
    kill -0 "$rx_pid" 2>/dev/null || break
    sleep 0.3
  done
  wait "$rx_pid" || die "UDP datagram did not arrive through the tunnel"
  grep -q "gpumesh-wg-ok from $tun_a" "$work/udp.out" || die "unexpected UDP result: $(cat "$work/udp.out")"
  log "received through the tunnel: $(cat "$work/udp.out")"
else
  log "python3 not found; skipping the UDP data check (the handshake already passed)"
fi

log "wg show:"
ip netns exec "$ns_a" wg show "$if_a" >&2
ip netns exec "$ns_b" wg show "$if_b" >&2
log "OK: $(wireguard-go --version 2>&1 | head -n 1) works on this machine"
