#!/usr/bin/env bash
# Runs the Autobahn TestSuite (wstest -m fuzzingclient) against Herald's /echo,
# once without and once with -compression, and fails on any case whose result
# is FAILED, NON-STRICT or UNIMPLEMENTED (see conformance/AUTOBAHN.md).
#
# The suite is not part of this repository and nothing here installs it: set
# WSTEST to the command that runs `wstest` (default: `wstest` on the PATH).
#
#   WSTEST=/path/to/wstest conformance/autobahn/run.sh [plain|compression]...
#
# Reports go to $AUTOBAHN_OUT (default bin/autobahn): <mode>/index.json and
# one HTML and one JSON file per case. Only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/../.."

WSTEST=${WSTEST:-wstest}
OUT=${AUTOBAHN_OUT:-bin/autobahn}
CASES=${AUTOBAHN_CASES:-*}
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(plain compression)

if ! command -v "${WSTEST%% *}" >/dev/null 2>&1; then
	echo "autobahn: '$WSTEST' not found; set WSTEST to the Autobahn TestSuite's wstest (see conformance/AUTOBAHN.md)" >&2
	exit 2
fi
if ! command -v python3 >/dev/null 2>&1; then
	echo "autobahn: python3 is needed to read the reports" >&2
	exit 2
fi

mkdir -p "$OUT"
go build -o "$OUT/herald" ./cmd/herald

pid=
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
trap stop EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

status=0
for mode in "${modes[@]}"; do
	case $mode in
	plain) extra=() ;;
	compression) extra=(-compression) ;;
	*) echo "autobahn: unknown mode $mode (plain or compression)" >&2; exit 2 ;;
	esac
	dir=$OUT/$mode
	rm -rf "$dir"
	mkdir -p "$dir"
	port=$(free_port)
	# 9.x sends messages of up to 16 MiB and reads the echo of each before
	# the next, so the message and write-buffer limits are raised past that.
	"$OUT/herald" serve -echo -addr "127.0.0.1:$port" -api-addr "" \
		-max-message-size 32MiB -write-buffer-limit 32MiB -log-level warn \
		"${extra[@]}" >"$dir/herald.log" 2>&1 &
	pid=$!
	for _ in $(seq 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.1
	done
	python3 - "$dir" "$port" "$CASES" <<'PY'
import json, sys
out, port, cases = sys.argv[1], sys.argv[2], sys.argv[3]
spec = {
    "outdir": out,
    "servers": [{"agent": "herald", "url": "ws://127.0.0.1:%s/echo" % port}],
    "cases": cases.split(","),
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
json.dump(spec, open(out + "/spec.json", "w"), indent=2)
PY
	echo "autobahn: $mode: herald on 127.0.0.1:$port, reports in $dir"
	$WSTEST -m fuzzingclient -s "$dir/spec.json" >"$dir/wstest.log" 2>&1 || {
		echo "autobahn: $mode: wstest exited $? (log: $dir/wstest.log)" >&2
		tail -20 "$dir/wstest.log" >&2
		status=1
	}
	stop
	python3 conformance/autobahn/verdict.py "$mode" "$dir/index.json" || status=1
done
exit $status
