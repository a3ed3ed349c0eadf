"""Run the sandbox: in a background thread (tests, `run --sandbox`), or in the foreground (CLI).

with serve_in_thread(seed=load_seed(path)) as sandbox:
    sandbox.url       # http://127.0.0.1:PORT/api/public
    sandbox.api_key   # the key it accepts
    sandbox.store     # the SQLite store: audit(), get_lead(), ...
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from batch_assign.sandbox.app import SandboxSettings, build_app
from batch_assign.sandbox.store import Store

__all__ = ["RunningSandbox", "load_seed", "serve_forever", "serve_in_thread"]


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    """A sandbox that is listening: where it is and what it holds."""

    url: str
    api_key: str
    store: Store
    settings: SandboxSettings


def load_seed(path: str | Path) -> dict[str, Any]:
    """Read a seed file: JSON `{"workflows": [{id, name, paused?, goal_type?}],
    "leads": [{id, first_name, workflow_id?, ...}]}`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not {"workflows", "leads"} & data.keys():
        raise ValueError(f"{path}: a seed is a JSON object with 'workflows' and/or 'leads' lists")
    return data


async def _start(store: Store, settings: SandboxSettings, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(
        build_app(store, settings), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    return runner


def _bound_port(runner: web.AppRunner) -> int:
    server = runner.server
    assert server is not None
    for site in runner.sites:
        sockets = getattr(getattr(site, "_server", None), "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
    raise RuntimeError("sandbox did not bind a socket")


@contextmanager
def serve_in_thread(
    *,
    seed: Mapping[str, Any] | None = None,
    settings: SandboxSettings | None = None,
    db: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[RunningSandbox]:
    """Start the sandbox on a free loopback port in a daemon thread; stop it on exit."""
    settings = settings or SandboxSettings()
    store = Store(db)
    if seed:
        store.seed(seed)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["runner"] = loop.run_until_complete(_start(store, settings, host, port))
        except BaseException as exc:  # surfaced to the caller below
            box["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        pending = asyncio.all_tasks(loop)  # handlers still sleeping (slow-after faults)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=main, name="nexor-sandbox", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    bound = _bound_port(box["runner"])
    try:
        yield RunningSandbox(
            f"http://{host}:{bound}/api/public", settings.api_keys[0], store, settings
        )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        # the store stays open: tests read the audit after the server has stopped


def serve_forever(
    *,
    store: Store,
    settings: SandboxSettings,
    host: str,
    port: int,
    announce: Any,
) -> None:
    """Run in the foreground until SIGINT/SIGTERM; `announce(url)` is called once listening."""
    import signal

    async def main() -> None:
        runner = await _start(store, settings, host, port)
        announce(f"http://{host}:{_bound_port(runner)}/api/public")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
