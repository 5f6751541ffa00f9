"""The pure core: every decision herd-mesh makes, on frozen snapshots, with no I/O.

Nothing here imports asyncio, httpx, zeroconf, psutil, sqlite3 or starlette, and nothing reads the clock or
draws random numbers: `now` and `rng` are parameters. The mesh, dispatch and the services sense the world,
call these functions, and act on the answer; `benchmarks/scheduler.py` calls the very same functions.
"""
