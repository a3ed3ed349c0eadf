"""The peers we compare with: bare client loops, each run as its own process.

python bench/_peers.py aiohttp|aiohttp-uvloop|httpx|requests URL ROWS IN_FLIGHT
python bench/_peers.py paced|paced-from-answers URL ROWS RATE  (prints {"rows", "seconds", "refused"})
"""

from __future__ import annotations

import sys
import uuid

WORKFLOW = "6a1f0c1e-58d1-4a36-9a4e-0f4f2d4d8b11"
HEADERS = {"X-API-Key": "nxr_live_bench"}


def urls(base: str, rows: int) -> list[str]:
    return [f"{base}/leads/{uuid.UUID(int=i + 1)}/assign-workflow" for i in range(rows)]


def run_aiohttp(base: str, rows: int, in_flight: int, on_uvloop: bool = False) -> int:
    """The script most users would write (asyncio's own loop), or the same on uvloop, as
    batch-assign runs where uvloop is installed."""
    import asyncio

    import aiohttp

    async def main() -> int:
        todo = iter(urls(base, rows))
        ok = 0
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=in_flight), headers=HEADERS
        ) as session:

            async def worker() -> None:
                nonlocal ok
                for url in todo:
                    async with session.post(url, json={"workflowId": WORKFLOW}) as response:
                        await response.json()
                        ok += response.status == 201

            await asyncio.gather(*(worker() for _ in range(in_flight)))
        return ok

    if on_uvloop:
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def run_httpx(base: str, rows: int, in_flight: int, transport: str = "httpx") -> int:
    """A bare httpx.AsyncClient loop, on httpx's own transport or an aiohttp one."""
    import asyncio

    import httpx

    async def main() -> int:
        todo = iter(urls(base, rows))
        ok = 0
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        chosen: httpx.AsyncBaseTransport | None = None
        if transport == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            chosen = AiohttpTransport(limits=limits)
        elif transport == "httpx-ours":
            from batch_assign.transport import AiohttpTransport as Ours

            chosen = Ours(limits=limits)
        async with httpx.AsyncClient(headers=HEADERS, limits=limits, transport=chosen) as client:

            async def worker() -> None:
                nonlocal ok
                for url in todo:
                    response = await client.post(url, json={"workflowId": WORKFLOW})
                    response.json()
                    ok += response.status_code == 201

            await asyncio.gather(*(worker() for _ in range(in_flight)))
        return ok

    return asyncio.run(main())


def run_requests(base: str, rows: int, in_flight: int) -> int:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    local = threading.local()

    def post(url: str) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers.update(HEADERS)
        response = session.post(url, json={"workflowId": WORKFLOW})
        response.json()
        return int(response.status_code == 201)

    with ThreadPoolExecutor(in_flight) as pool:
        return sum(pool.map(post, urls(base, rows)))


def run_paced(base: str, rows: int, rate: float, from_answers: bool) -> dict[str, float]:
    """A punctual hand-written script: one keep-alive connection, one request at a time, each
    spun to its slot (which holds a core) at 97 % of `rate`, the next slot an interval after this
    send. A 429 waits its Retry-After and sends the row again. `from_answers`: the next slot is
    also no sooner than an interval after this answer, less the quickest of the last 32 round
    trips (what batch-assign's limiter does once a server's bucket shows it holds one request).
    Stops after 60 s."""
    import http.client
    import json
    import time
    from collections import deque
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    body = json.dumps({"workflowId": WORKFLOW}).encode()
    headers = {**HEADERS, "Content-Type": "application/json"}
    interval = 1 / (rate * 0.97)
    round_trips: deque[float] = deque(maxlen=32)
    started = slot = time.perf_counter()
    refused = done = 0
    for url in urls(base, rows):
        if time.perf_counter() - started > 60:  # a script that 429s a lot would take minutes
            break
        path = urlsplit(url).path
        while True:
            while time.perf_counter() < slot:  # spun, not slept: as punctual as a client gets
                pass
            sent = time.perf_counter()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            answered = time.perf_counter()
            slot = sent + interval
            if from_answers:
                round_trips.append(answered - sent)
                slot = max(slot, answered - min(round_trips) + interval)
            if response.status != 429:
                done += 1
                break
            refused += 1
            slot = max(slot, answered + float(response.getheader("Retry-After") or 1))
    return {"rows": done, "seconds": time.perf_counter() - started, "refused": refused}


if __name__ == "__main__":
    if sys.argv[1].startswith("paced"):  # paced, paced-from-answers
        import json

        result = run_paced(
            sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[1] == "paced-from-answers"
        )
        print(json.dumps(result))
        sys.exit(0)
    kind, base, rows, in_flight = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if kind.startswith("httpx"):  # httpx, httpx-aiohttp, httpx-ours: the transport under it
        done = run_httpx(base, rows, in_flight, kind)
    elif kind == "aiohttp-uvloop":
        done = run_aiohttp(base, rows, in_flight, on_uvloop=True)
    else:
        done = {"aiohttp": run_aiohttp, "requests": run_requests}[kind](base, rows, in_flight)
    sys.exit(0 if done == rows else 1)
