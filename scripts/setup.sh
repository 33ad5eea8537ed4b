#!/usr/bin/env bash
# Set up a Debian 12 machine for novanet and run one make target:
#   sudo scripts/setup.sh run    install what is needed, start PostgreSQL and the manager
#   sudo scripts/setup.sh test   install what is needed and run every test
# Installing is idempotent: packages already present are not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
	make gcc git ca-certificates
	postgresql postgresql-contrib   # the database, pg_ctlcluster, pgbench
	iproute2 iptables dnsmasq-base busybox arping  # bridges, firewall, DHCP, the test VMs' DHCP client
	systemd                         # systemd-analyze verifies the units in deploy/
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "setup: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go: /usr/local/go as on this project's machines, else whatever is on PATH.
# go.mod names the exact toolchain; a Go >= 1.21 fetches it by itself.
export PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null; then
	echo "setup: no Go toolchain: install Go 1.21 or later (https://go.dev/doc/install) into /usr/local/go" >&2
	exit 1
fi

exec make "$@"
