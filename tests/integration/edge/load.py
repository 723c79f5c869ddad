"""Load from a separate process: N sequential requests through httpx, statuses and headers as JSON.

    python -m tests.integration.edge.load URL --tenant acme --xff 192.0.2.7 --n 20
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx

WATCHED = ("ratelimit-policy", "ratelimit", "retry-after")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--tenant", required=True)
    p.add_argument("--xff", required=True, help="the client address the (trusted) proxy reports")
    p.add_argument("--n", type=int, default=1)
    args = p.parse_args(argv)
    out: dict[str, list[object]] = {"statuses": [], "headers": []}
    with httpx.Client(timeout=30.0) as client:
        for _ in range(args.n):
            r = client.get(args.url, headers={"X-Tenant-Id": args.tenant, "X-Forwarded-For": args.xff})
            out["statuses"].append(r.status_code)
            out["headers"].append({k: r.headers[k] for k in WATCHED if k in r.headers})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
