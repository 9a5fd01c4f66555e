#!/usr/bin/env python3
"""Reads a fuzzingclient reports/index.json and fails on any case that is not OK.

usage: verdict.py MODE INDEX_JSON

A case passes when its behavior is OK or INFORMATIONAL and its close
behavior is OK or INFORMATIONAL. In MODE "plain" (Herald without
-compression) the permessage-deflate cases 12.x and 13.x must instead be
UNIMPLEMENTED: the server declined the extension, as it must when it is off.
Prints the counts per result and every case that failed; exits 1 if any did.
"""
import collections
import json
import sys

PASS = {"OK", "INFORMATIONAL"}


def key(case_id):
    return [int(p) for p in case_id.split(".")]


def main():
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        index = json.load(f)
    bad = []
    counts = collections.Counter()
    total = 0
    for agent, cases in sorted(index.items()):
        for cid in sorted(cases, key=key):
            r = cases[cid]
            total += 1
            counts[r["behavior"]] += 1
            deflate = cid.split(".")[0] in ("12", "13")
            if mode == "plain" and deflate:
                ok = r["behavior"] == "UNIMPLEMENTED"
            else:
                ok = r["behavior"] in PASS and r["behaviorClose"] in PASS
            if not ok:
                bad.append("%s %s: behavior %s, close %s (%s)" % (
                    agent, cid, r["behavior"], r["behaviorClose"], r.get("reportfile", "")))
    summary = ", ".join("%s %d" % (k, counts[k]) for k in sorted(counts))
    print("autobahn: %s: %d cases: %s" % (mode, total, summary))
    for line in bad:
        print("autobahn: %s: FAIL %s" % (mode, line))
    if total == 0:
        print("autobahn: %s: no cases in %s" % (mode, path))
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
