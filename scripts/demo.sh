#!/usr/bin/env bash
# novanet end to end on one machine, in throwaway network namespaces:
#
#   sudo scripts/demo.sh        (or: sudo make demo)
#
# It builds the binaries, starts its own PostgreSQL (a temporary cluster
# listening on a unix socket only), network-manager with an embedded NATS on
# loopback, and network-host (flatdhcp) programming a "hypervisor" network
# namespace. It creates a network, allocates two instances as a compute
# service would, plugs two "VM" namespaces into the bridge the agent made,
# runs busybox udhcpc in each, pings the gateway, and waits for the DHCP
# leases to reach the manager. Everything is removed on exit. Nothing is
# created in the machine's own network namespace: links, addresses, routes
# and iptables rules are made only in the namespaces named novanet-demo-PID-*.
#
# Environment: NOVANET_PG_BINDIR (PostgreSQL server binaries; default the
# newest /usr/lib/postgresql/*/bin), NOVANET_DEMO_KEEP=1 (keep the temporary
# directory with the logs), NOVANET_DEMO_TIMEOUT (seconds per wait, default 60).
#
# Exit status: 0 when every check passed, 1 when one failed, 2 when it
# cannot run (not root, missing tools).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"

if [[ $(id -u) -ne 0 ]]; then
	echo "demo: must run as root (it creates network namespaces, bridges, dnsmasq and iptables rules inside them): sudo make demo" >&2
	exit 2
fi

missing=()
for t in go ip iptables-save dnsmasq busybox runuser ps; do
	command -v "$t" >/dev/null || missing+=("$t")
done
PGBIN=${NOVANET_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -1)}
[[ -n $PGBIN && -x $PGBIN/initdb && -x $PGBIN/pg_ctl ]] || missing+=("PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
id postgres >/dev/null 2>&1 || missing+=("the postgres user")
if ((${#missing[@]})); then
	echo "demo: missing: ${missing[*]} (sudo scripts/setup.sh installs them)" >&2
	exit 2
fi

TIMEOUT=${NOVANET_DEMO_TIMEOUT:-60}
HOST=demo-hv
CHAINS=nn-demo
CIDR=10.20.0.0/24
GATEWAY=10.20.0.1
NS_PREFIX=novanet-demo-$$
HV=$NS_PREFIX-hv
VMS=("$NS_PREFIX-vm1" "$NS_PREFIX-vm2")

START=$(date +%s%N)
# What the machine's own namespace looks like, to check at the end that
# the demo left it alone.
own_links() { ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort; }
OWN_LINKS=$(own_links)
OWN_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
TMP=$(mktemp -d /tmp/novanet-demo.XXXXXX) || exit 2
chmod 0755 "$TMP" # dnsmasq drops to its own user and re-reads its files under dhcp/
BIN=$TMP/bin
LOGS=$TMP/logs
mkdir -p "$BIN" "$LOGS"

ok=0
failed=()
MANAGER_PID= AGENT_PID= PG_STARTED= NAMESPACES=()

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
pass() { printf '    PASS  %s\n' "$*"; ok=$((ok + 1)); }
fail() { printf '    FAIL  %s\n' "$*"; failed+=("$*"); }
indent() { sed 's/^/    /'; }
elapsed() {
	local ms=$((($(date +%s%N) - START) / 1000000))
	printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

# die stops the demo: a step that everything after it needs went wrong.
die() {
	fail "$*"
	exit 1
}

# wait_for DESCRIPTION COMMAND...: poll COMMAND until it succeeds or
# TIMEOUT seconds pass; COMMAND exits 2 to give up at once (a process it
# waits for has died). Returns 1 on timeout or when given up.
wait_for() {
	local what=$1 rc
	shift
	local deadline=$(($(date +%s) + TIMEOUT))
	while true; do
		"$@" >/dev/null 2>&1
		rc=$?
		((rc == 0)) && return 0
		if ((rc == 2)); then
			echo "    gave up waiting for $what: the process it depends on has exited" >&2
			return 1
		fi
		if (($(date +%s) >= deadline)); then
			echo "    timed out after ${TIMEOUT}s waiting for $what" >&2
			return 1
		fi
		sleep 0.2 # poll interval
	done
}

# stop_pid PID NAME: SIGTERM, wait up to 10s, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

show_logs() {
	local f
	for f in "$LOGS"/network-manager.log "$LOGS"/network-host.log "$TMP"/pg/postgres.log; do
		[[ -s $f ]] || continue
		echo "---- last lines of $f"
		tail -n 25 "$f"
	done
}

cleanup() {
	local rc=$? ns pid
	trap - EXIT INT TERM
	if ((rc != 0 || ${#failed[@]})); then
		show_logs
	fi
	echo
	echo "==> cleaning up"
	# The manager first: on SIGTERM it waits for its notifications to the
	# agent, which a stopped agent would leave unanswered until they time out.
	[[ -n $MANAGER_PID ]] && stop_pid "$MANAGER_PID"
	[[ -n $AGENT_PID ]] && stop_pid "$AGENT_PID"
	for ns in "${NAMESPACES[@]}"; do
		# dnsmasq and anything else still inside our namespaces.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
		for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
		ip netns del "$ns" 2>/dev/null || echo "    could not delete namespace $ns" >&2
	done
	if [[ -n $PG_STARTED ]]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m fast -w stop >/dev/null 2>&1 ||
			echo "    could not stop PostgreSQL in $TMP/pg" >&2
	fi
	if [[ ${NOVANET_DEMO_KEEP:-} == 1 ]]; then
		echo "    kept $TMP (logs in $TMP/logs)"
	else
		rm -rf "$TMP"
	fi
	echo
	if ((rc == 0 && ${#failed[@]} == 0)); then
		echo "demo: PASS ($ok checks, $(elapsed))"
		exit 0
	fi
	if ((${#failed[@]})); then
		echo "demo: FAIL (${#failed[@]} of $((ok + ${#failed[@]})) checks failed, $(elapsed)):"
		printf '  - %s\n' "${failed[@]}"
	else
		echo "demo: FAIL (stopped after $ok checks passed, $(elapsed): exit status $rc)"
	fi
	((rc == 0)) && rc=1
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; failed+=("interrupted"); exit 130' INT TERM

# -- build ------------------------------------------------------------------
say "building network-manager, network-host, netadm and the demo allocator into $BIN"
go build -buildvcs=false -o "$BIN/" ./cmd/network-manager ./cmd/network-host ./cmd/netadm ./internal/demo/allocate ||
	die "go build"
# The embedded server's identities: its own and the operator's (made at
# its start), then the agent's and the compute allocator's, issued with
# "network-manager creds add" as an operator would.
CREDS=$TMP/nats
netadm() { "$BIN/netadm" --nats-url "$NATS" --nats-nkey "$CREDS/operator.admin.nk" --timeout 10s "$@"; }

# -- PostgreSQL ---------------------------------------------------------------
say "starting a throwaway PostgreSQL ($PGBIN) on a unix socket in $TMP/pg"
install -d -m 0700 -o postgres -g postgres "$TMP/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$TMP/pg/data" -U postgres -A trust --no-sync -E UTF8 --locale=C \
	>"$LOGS/initdb.log" 2>&1 || die "initdb (see $LOGS/initdb.log)"
PG_STARTED=1
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/postgres.log" -w -t "$TIMEOUT" \
	-o "-k $TMP/pg -p 5432 -c listen_addresses='' -c unix_socket_permissions=0700 -c fsync=off -c full_page_writes=off" \
	start >/dev/null || die "PostgreSQL did not start"
runuser -u postgres -- "$PGBIN/createdb" -h "$TMP/pg" -p 5432 novanet || die "createdb novanet"
DATABASE_URL="postgres://postgres@/novanet?host=${TMP//\//%2F}%2Fpg&port=5432&sslmode=disable"
pass "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') up, database novanet"

# -- network-manager ------------------------------------------------------------
say "starting network-manager (flatdhcp, embedded NATS and HTTP on loopback ports it picks)"
"$BIN/network-manager" serve --database-url "$DATABASE_URL" --migrate --network-mode flatdhcp --creds-dir "$CREDS" \
	--embedded-nats-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --log-format console \
	>"$LOGS/network-manager.log" 2>&1 &
MANAGER_PID=$!
manager_ready() {
	kill -0 "$MANAGER_PID" 2>/dev/null || return 2
	grep -q 'network-manager ready' "$LOGS/network-manager.log" || return 1
}
wait_for "network-manager ready" manager_ready || die "network-manager did not become ready"
ready_line=$(grep 'network-manager ready' "$LOGS/network-manager.log" | head -1)
NATS=$(grep -o 'nats://127\.0\.0\.1:[0-9]*' <<<"$ready_line" | head -1)
HTTP=$(grep -o '"http": "[^"]*"' <<<"$ready_line" | cut -d'"' -f4)
[[ -n $NATS ]] || die "no NATS URL in the manager's ready line: $ready_line"
pass "network-manager ready: NATS $NATS, HTTP http://$HTTP"
"$BIN/network-manager" creds add host "$HOST" --creds-dir "$CREDS" | indent || die "creds add host $HOST"
"$BIN/network-manager" creds add compute demo --creds-dir "$CREDS" | indent || die "creds add compute demo"

# -- hypervisor namespace and agent ---------------------------------------------
say "creating the hypervisor namespace $HV and starting network-host --host $HOST in it"
ip netns add "$HV" || die "ip netns add $HV"
NAMESPACES+=("$HV")
ip -n "$HV" link set lo up
"$BIN/network-host" serve --netns "/run/netns/$HV" --host "$HOST" --driver flatdhcp --nats-url "$NATS" --nats-nkey "$CREDS/host.$HOST.nk" \
	--dhcp-dir "$TMP/dhcp" --state-dir "$TMP/state" --event-socket "$TMP/host.sock" \
	--iptables-chain-prefix "$CHAINS" --heartbeat-interval 1s --log-format console \
	>"$LOGS/network-host.log" 2>&1 &
AGENT_PID=$!
host_alive() {
	kill -0 "$AGENT_PID" 2>/dev/null || return 2
	netadm host list | awk -v h="$HOST" '$1 == h && $(NF-1) == "yes" {found=1} END {exit !found}' || return 1
}
wait_for "$HOST alive in netadm host list" host_alive || die "agent $HOST never showed up alive"
netadm host list | indent
pass "agent $HOST registered and alive"

# -- network and instances --------------------------------------------------------
say "netadm network create $CIDR 1 256 --bridge br100 --label demo"
netadm network create "$CIDR" 1 256 --bridge br100 --label demo | indent || die "network create"

say "allocating two instances on host $HOST (allocate_for_instance, as a compute service would)"
MACS=() IPS=()
for i in 1 2; do
	out=$("$BIN/allocate" --nats-url "$NATS" --nats-nkey "$CREDS/compute.demo.nk" --host "$HOST" --project demo --network demo) || die "allocate instance $i"
	read -r mac ip <<<"$out"
	MACS+=("$mac") IPS+=("$ip")
	echo "    vm$i: MAC $mac  address $ip"
done
netadm fixed list --network demo | indent

say "waiting for the agent to build br100, its gateway address and dnsmasq in $HV"
agent_alive() { kill -0 "$AGENT_PID" 2>/dev/null; }
bridge_up() {
	agent_alive || return 2
	ip -n "$HV" -4 addr show dev br100 2>/dev/null | grep -q "inet $GATEWAY/" || return 1
}
dnsmasq_running() {
	local pid
	agent_alive || return 2
	for pid in $(ip netns pids "$HV"); do
		[[ $(ps -o comm= -p "$pid") == dnsmasq ]] && return 0
	done
	return 1
}
dnsmasq_knows() { grep -rqi -- "$1" "$TMP/dhcp" 2>/dev/null || return 1; }
if wait_for "br100 with $GATEWAY in $HV" bridge_up; then
	pass "br100 up with $GATEWAY in $HV"
else
	die "no br100 with $GATEWAY in $HV"
fi
wait_for "dnsmasq in $HV" dnsmasq_running && pass "dnsmasq running in $HV" || die "no dnsmasq in $HV"
for i in 0 1; do
	wait_for "dnsmasq hosts entry for ${MACS[i]}" dnsmasq_knows "${MACS[i]}" ||
		fail "dnsmasq has no entry for ${MACS[i]} under $TMP/dhcp"
done
ip -n "$HV" -br addr | indent

# -- the VMs ------------------------------------------------------------------------
# The VMs' busybox udhcpc event script, shared with the tests.
install -m 0755 linuxnet/nstest/udhcpc.sh "$TMP/udhcpc.sh"

for i in 0 1; do
	n=$((i + 1)) vm=${VMS[i]} mac=${MACS[i]} want=${IPS[i]}
	say "vm$n: namespace $vm, eth0 $mac plugged into br100 (port vm$n in $HV), DHCP with busybox udhcpc"
	ip netns add "$vm" || die "ip netns add $vm"
	NAMESPACES+=("$vm")
	ip -n "$vm" link set lo up
	# The veth is created inside the hypervisor namespace, never in ours.
	ip -n "$HV" link add "vm$n" type veth peer name eth0 netns "$vm" || die "veth for vm$n"
	ip -n "$vm" link set eth0 address "$mac" || die "set MAC of vm$n"
	ip -n "$vm" link set eth0 up
	ip -n "$HV" link set "vm$n" master br100 up || die "enslave vm$n to br100"
	mkdir -p "$TMP/vm$n"
	if STATE=$TMP/vm$n ip netns exec "$vm" busybox udhcpc -i eth0 -f -q -n -t 20 -T 1 -O mtu -O domain -O dns \
		-s "$TMP/udhcpc.sh" >"$LOGS/udhcpc-vm$n.log" 2>&1; then
		indent <"$LOGS/udhcpc-vm$n.log"
		got=$(sed -n 's/^ip=//p' "$TMP/vm$n/udhcpc-bound.env" 2>/dev/null)
		if [[ $got == "$want" ]]; then
			pass "vm$n got $got by DHCP, the address the manager allocated"
		else
			fail "vm$n got '$got' by DHCP, the manager allocated $want"
		fi
		sed 's/^/    lease: /' "$TMP/vm$n/udhcpc-bound.env"
		ip -n "$vm" -br -4 addr show dev eth0 | indent
		ip -n "$vm" route | indent
	else
		indent <"$LOGS/udhcpc-vm$n.log"
		fail "vm$n: udhcpc got no lease"
		continue
	fi
	if ip netns exec "$vm" busybox ping -c 2 -W 3 "$GATEWAY" >"$LOGS/ping-vm$n.log" 2>&1; then
		indent <"$LOGS/ping-vm$n.log"
		pass "vm$n pings the gateway $GATEWAY"
	else
		indent <"$LOGS/ping-vm$n.log"
		fail "vm$n cannot ping the gateway $GATEWAY"
	fi
done

# -- the leases reach the manager --------------------------------------------------
say "waiting for both leases to reach the manager (dnsmasq --dhcp-script -> network-host dhcp-event -> agent -> manager)"
leased() {
	agent_alive || return 2
	netadm fixed list --network demo | awk -v a="$1" '$1 == a && $7 == "yes" {found=1} END {exit !found}' || return 1
}
for i in 0 1; do
	if wait_for "${IPS[i]} leased" leased "${IPS[i]}"; then
		pass "${IPS[i]} (vm$((i + 1))) is leased in the manager"
	else
		fail "${IPS[i]} (vm$((i + 1))) never showed as leased"
	fi
done
echo "    the agent's log:"
grep -E 'dhcp event' "$LOGS/network-host.log" | indent
echo "    \$ netadm fixed list"
netadm fixed list | indent
echo "    \$ netadm host list"
netadm host list | indent

# -- firewall ----------------------------------------------------------------------
say "iptables-save in $HV: the agent's chains ($CHAINS-*) and the shared novanet-* hooks"
rules=$(ip netns exec "$HV" iptables-save 2>&1)
if grep -q -- "$CHAINS-" <<<"$rules"; then
	grep -E -- "^\*|$CHAINS-|novanet-" <<<"$rules" | indent
	pass "the agent's iptables chains are in $HV"
else
	fail "no $CHAINS chains in $HV"
fi

say "the machine's own network namespace"
if iptables-save 2>/dev/null | grep -q -- "$CHAINS"; then
	fail "$CHAINS chains found in the machine's own namespace"
else
	pass "no $CHAINS chains in the machine's own namespace"
fi
new_links=$(comm -13 <(echo "$OWN_LINKS") <(own_links) | grep -xE 'br100|vm[12]|eth0' || true)
if [[ -n $new_links ]]; then
	fail "links appeared in the machine's own namespace: $(echo $new_links)"
else
	pass "no br100, vm1, vm2 or eth0 link appeared in the machine's own namespace"
fi
if [[ $(cat /proc/sys/net/ipv4/ip_forward) == "$OWN_FORWARD" ]]; then
	pass "its net.ipv4.ip_forward is still $OWN_FORWARD (the agent set it to $(ip netns exec "$HV" cat /proc/sys/net/ipv4/ip_forward) in $HV)"
else
	fail "net.ipv4.ip_forward changed from $OWN_FORWARD in the machine's own namespace"
fi

if [[ -n $HTTP ]] && command -v curl >/dev/null; then
	say "manager health: http://$HTTP/readyz"
	curl -fsS "http://$HTTP/readyz" | indent && echo && pass "manager /readyz answers" || fail "manager /readyz"
fi

kill -0 "$AGENT_PID" 2>/dev/null && pass "network-host still running" || fail "network-host exited (see its log)"
kill -0 "$MANAGER_PID" 2>/dev/null && pass "network-manager still running" || fail "network-manager exited (see its log)"
