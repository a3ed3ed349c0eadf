"""A minimal loopback stand-in for benchmarks: canned answers, so the server is not what we measure.

    python bench/_server.py [--latency-ms 0] [--rate-limit 0] [--burst 1] [--no-rate-headers]
                            [--announce-limit N] [--no-retry-after]

Prints `listening on http://127.0.0.1:PORT/api/public` and serves until killed. POST
assign-workflow answers 201, GET /leads/{id} answers 200 with no active run. With --rate-limit, a
token bucket answers 429 with Retry-After (whole seconds, as the sandbox does) and counts them.
--announce-limit sends another X-RateLimit-Limit than the bucket's rate (a per-minute figure, say);
--no-retry-after leaves Retry-After off the 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time

from aiohttp import web

ASSIGNED = json.dumps(
    {
        "workflowRunId": "5b1a2a8e-54a4-4c4e-9a51-1a7c3b0f3a10",
        "workflowId": "6a1f0c1e-58d1-4a36-9a4e-0f4f2d4d8b11",
        "workflowName": "Bench",
        "movementType": "enrollment",
        "paused": False,
    }
).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=0.0)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--no-rate-headers", action="store_true")
    parser.add_argument("--announce-limit", type=float, default=0.0)
    parser.add_argument("--no-retry-after", action="store_true", help="429s without Retry-After")
    args = parser.parse_args()
    tokens, stamp = float(args.burst), time.monotonic()
    counts = {"ok": 0, "429": 0}

    def limited() -> tuple[bool, dict[str, str]]:
        nonlocal tokens, stamp
        if args.rate_limit <= 0:
            return False, {}
        now = time.monotonic()
        tokens = min(args.burst, tokens + (now - stamp) * args.rate_limit)
        stamp = now
        if tokens >= 1:
            tokens -= 1
            headers = (
                {}
                if args.no_rate_headers
                else {
                    "X-RateLimit-Limit": str(int(args.announce_limit or args.rate_limit)),
                    "X-RateLimit-Remaining": str(int(tokens)),
                }
            )
            return False, headers
        wait = max(1, math.ceil((1 - tokens) / args.rate_limit))
        return True, {} if args.no_retry_after else {"Retry-After": str(wait)}

    async def handle(request: web.Request) -> web.Response:
        if args.latency_ms:
            await asyncio.sleep(args.latency_ms / 1000)
        await request.read()
        refused, headers = limited()
        if refused:
            counts["429"] += 1
            return web.Response(
                status=429,
                body=b'{"error":"Too many requests"}',
                headers=headers,
                content_type="application/json",
            )
        counts["ok"] += 1
        if request.method == "POST":
            return web.Response(
                status=201, body=ASSIGNED, headers=headers, content_type="application/json"
            )
        lead = request.match_info["id"]
        body = json.dumps(
            {"success": True, "lead": {"id": lead, "active_workflow_run": None}}
        ).encode()
        return web.Response(status=200, body=body, headers=headers, content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(counts)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/api/public/leads/{id}/assign-workflow", handle)
        app.router.add_get("/api/public/leads/{id}", handle)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        port = runner.addresses[0][1]
        print(f"listening on http://127.0.0.1:{port}/api/public", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
