#!/usr/bin/env bash
# make bench-dhcp: perfdhcp acting as a relay (for DHCPv4 it always is: giaddr = its address, port 67; -A is v6-only) sends full DORA exchanges for
# CLIENTS distinct clients to, in turn, Prybar (authoritative, SQLite, leases persisted), Kea
# (kea-dhcp4, memfile) and dnsmasq, all on this machine, in two network namespaces joined by a
# veth pair. For each server it climbs a rate ladder and reports the highest rate whose drops stay
# at or under MAXDROP percent. Needs root. Not a test: it prints numbers for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CLIENTS=${CLIENTS:-50000}
RATES=${RATES:-"500 1000 2000 3000 4000 6000 8000 10000 12000"}
MAXDROP=${MAXDROP:-0.1}
# DROPTIME is perfdhcp's -d: an exchange not answered within it counts as dropped (perfdhcp's
# default is 1 s). LOGDIR, when set, keeps every perfdhcp report. TRIES is how many runs a server
# gets at a rate before a failure ends its climb (default 2): on a shared two-core machine a
# single run fails now and then for reasons that have nothing to do with the server (perfdhcp
# itself needs more than a core), and one such run used to decide a server's result.
DROPTIME=${DROPTIME:-1}
LOGDIR=${LOGDIR:-}
TRIES=${TRIES:-2}
SERVERS=${SERVERS:-"prybar kea dnsmasq"}
id=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
S=prybar-dhcp-bs-$id C=prybar-dhcp-bc-$id
work=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	ip netns del "$S" 2>/dev/null || true
	ip netns del "$C" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
for t in ip perfdhcp kea-dhcp4 dnsmasq; do command -v $t >/dev/null || { echo "bench-dhcp: $t missing"; exit 1; }; done
case " $SERVERS " in *" prybar "*) go build -o "$work/prybar" ./cmd/prybar ;; esac

ip netns add "$S"; ip netns add "$C"
ip -n "$S" link add vs type veth peer name vc netns "$C"
ip -n "$S" addr add 10.88.0.1/16 dev vs; ip -n "$C" addr add 10.88.0.2/16 dev vc
for n in "$S" "$C"; do ip -n "$n" link set lo up; done
ip -n "$S" link set vs up; ip -n "$C" link set vc up

cat > "$work/fixture.yaml" <<YAML
networks:
  - name: bench
    cidr: 10.88.0.0/16
    router: 10.88.0.1
    ranges:
      - {name: pool, first: 10.88.1.0, last: 10.88.255.254, purpose: dhcp}
YAML

start_server() { # $1 = server; sets pid
	rm -rf "$work"/*.db* "$work"/leases*  # the database, its WAL and its DHCP journal
	case $1 in
	prybar)
		"$work/prybar" fixtures load --db "$work/p.db" --secret-key-file "$work/k" "$work/fixture.yaml" >/dev/null
		ip netns exec "$S" "$work/prybar" serve --db "$work/p.db" --secret-key-file "$work/k" --listen 127.0.0.1:0 \
			--log-level warn --dhcp authoritative --dhcp-iface vs >"$work/server.log" 2>&1 &
		;;
	kea)
		cat > "$work/kea.json" <<JSON
{"Dhcp4": {"interfaces-config": {"interfaces": ["vs"], "dhcp-socket-type": "udp"},
 "lease-database": {"type": "memfile", "persist": true, "name": "$work/leases.csv", "lfc-interval": 0},
 "valid-lifetime": 3600, "authoritative": true,
 "subnet4": [{"id": 1, "subnet": "10.88.0.0/16", "pools": [{"pool": "10.88.1.0 - 10.88.255.254"}],
   "option-data": [{"name": "routers", "data": "10.88.0.1"}]}],
 "loggers": [{"name": "kea-dhcp4", "severity": "ERROR", "output_options": [{"output": "$work/kea.log"}]}]}}
JSON
		# Kea writes its pid and logger lock files under /run/kea unless told otherwise: without
		# these two variables it exits at start ("Unable to open PID file") and answers nothing.
		KEA_PIDFILE_DIR="$work" KEA_LOCKFILE_DIR="$work" ip netns exec "$S" kea-dhcp4 -c "$work/kea.json" >"$work/server.log" 2>&1 &
		;;
	dnsmasq)
		# --quiet-dhcp: the others log at warn/error too; dnsmasq logs every packet otherwise.
		ip netns exec "$S" dnsmasq -d -k --port=0 --interface=vs --bind-interfaces --dhcp-authoritative --no-ping --quiet-dhcp \
			--dhcp-range=10.88.1.0,10.88.255.254,1h --dhcp-lease-max=200000 --dhcp-leasefile="$work/leases.dnsmasq" \
			--pid-file="$work/dnsmasq.pid" >"$work/server.log" 2>&1 &
		;;
	esac
	pid=$!
	sleep 3
}

# UDP packets a namespace's kernel dropped for want of socket buffer (cumulative)
rcvbuf_errors() { ip netns exec "$1" awk '/^Udp:/ {if (!h) {for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1} else print $c}' /proc/net/snmp; }

# utime + stime of a process, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# drop% of the whole exchange: 100 * (1 - ACKs received / DISCOVERs sent)
run_rate() { # $1 rate → prints drop percentage
	local secs=$(( CLIENTS / $1 + 10 ))
	local out
	out=$(timeout $((secs + 30)) ip netns exec "$C" perfdhcp -4 -l vc -r "$1" -R "$CLIENTS" -n "$CLIENTS" \
		-p "$secs" -W 2000000 -d "$DROPTIME" 10.88.0.1 2>&1 || true)
	echo "$out" > "$work/perfdhcp.$1.log"
	[ -z "$LOGDIR" ] || echo "$out" > "$LOGDIR/perfdhcp.$srv.$1.log"
	echo "$out" | awk '
		/^\*\*\*Statistics for/ {sec++}
		/^sent packets:/ {s[sec]=$3}
		/^received packets:/ {r[sec]=$3}
		END { if (s[1]+0 == 0) {print "100"; exit} ; printf "%.3f\n", 100*(1 - r[2]/s[1]) }'
}

# Rate by rate, every server still climbing runs back to back, so that on a shared machine the
# servers compared at one rate ran under about the same load. A server is clean at a rate when one
# of its TRIES runs there has at most MAXDROP percent drops (a second run comes after every other
# server's first); it stops climbing at the first rate where none is.
declare -A best climbing
for srv in $SERVERS; do best[$srv]=0; climbing[$srv]=1; done
for rate in $RATES; do
	for try in $(seq "$TRIES"); do
	for srv in $SERVERS; do
		[ "${climbing[$srv]}" = 1 ] || continue
		[ "${best[$srv]}" = "$rate" ] && continue # clean at this rate already
		start_server "$srv"
		cpu0=$(cpu_ticks "$pid")
		lostc0=$(rcvbuf_errors "$C") losts0=$(rcvbuf_errors "$S")
		drop=$(run_rate "$rate")
		cpu1=$(cpu_ticks "$pid")
		# Where lost packets were dropped: perfdhcp's socket (answers sent but not taken in) or
		# the server's (requests the server was too far behind to take in).
		lost="in perfdhcp's socket $(( $(rcvbuf_errors "$C") - lostc0 )), in the server's $(( $(rcvbuf_errors "$S") - losts0 ))"
		kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
		got=$(awk '/^Rate:/ {print int($2); exit}' "$work/perfdhcp.$rate.log")
		acks=$(awk '/^\*\*\*Statistics for/ {sec++} /^received packets:/ && sec == 2 {print $3}' "$work/perfdhcp.$rate.log")
		# Server CPU per 1,000 acknowledged exchanges: a cost that depends far less on the
		# machine's load than the drop rate does.
		cpu=$(awk -v t=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" -v a="${acks:-0}" 'BEGIN { if (a > 0) printf "%.0f", 1000 * t / hz * 1000 / a; else print "?" }')
		printf '%-8s try %d rate %6d/s (perfdhcp achieved %s DORA/s)  drops %s%%  server CPU %s ms/1000 DORA  load %s  lost %s\n' "$srv" "$try" "$rate" "${got:-?}" "$drop" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)" "$lost"
		[ "$drop" = 100.000 ] && { echo "--- $srv log:"; tail -5 "$work/server.log" "$work/kea.log" 2>/dev/null || true; }
		if awk -v d="$drop" -v m="$MAXDROP" 'BEGIN{exit !(d<=m)}'; then
			best[$srv]=$rate
		elif [ "$try" = "$TRIES" ]; then
			climbing[$srv]=0
		fi
	done
	done
done
echo
echo "| server | highest DORA/s with <= ${MAXDROP}% drops in one of $TRIES runs ($CLIENTS clients, relayed) |"
echo "| --- | --- |"
first=${RATES%% *}
for srv in $SERVERS; do
	if [ "${best[$srv]}" = 0 ]; then echo "| $srv | < $first |"; else echo "| $srv | ${best[$srv]} |"; fi
done
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
