#!/usr/bin/env python3
"""Driver program for `harness client`: SOLLOL's OllamaPool (sollol 0.9.66) against the given nodes.

Run with the venv from install.sh:  "$(sh install.sh)" drive.py [STRATEGY]

Protocol (the harness sets these):
  OPB_NODES     comma-separated node base URLs (http://127.0.0.1:40001,...)
  OPB_WORKERS   concurrent callers (threads); worker w sends requests n = w, w+W, w+2W, ...
  OPB_REQUESTS  total requests, one at a time per worker (closed loop)
  OPB_RUN_ID    request n carries the marker [rid:RUN_ID-n] in its input text
  OPB_PHASE     name of the cell being measured (informational)
  OPB_MODEL     embedding model to ask for
  OPB_REPORT    file to append JSON lines to: one per request
                {"id": "RUN_ID-n", "ok": bool, "latency_ms": float, "at_ms": float[, "error": str]}
                (at_ms: the send's wall-clock time, ms since the epoch, so the harness counts
                throughput from the first send, not from the interpreter's start-up),
                then {"stats": <pool.get_stats()>}
Each request is one pool.embed(model, text) call: POST /api/embed {"model", "input"}.

Strategy: first argument or SOLLOL_STRATEGY (default round_robin); one of
round_robin, latency_first, least_loaded, fairness, intelligent (sollol/routing_strategy.py).

Switched off, because they reach beyond the given nodes or change what is measured:
  - node discovery: nodes are given explicitly (discovery runs only when `nodes` is empty);
  - Dask (enable_dask=False): by default the pool connects to, or starts, a local Dask cluster;
  - Ray (enable_ray=False, already the default);
  - dashboard registration (register_with_dashboard=False): probes http://localhost:8080;
  - GPU Redis link and metrics publisher (enable_gpu_redis=False): Redis at localhost:6379;
  - the response cache (enable_cache=False): it would answer a repeated input without a node;
  - the routing-event logger's and network observer's Redis links (SOLLOL_ROUTING_LOG=false,
    network_observer.REDIS_AVAILABLE=False); the observer itself still runs, as it does per
    request in any SOLLOL program;
  - InfluxDB metrics (SOLLOL_METRICS_BACKEND=disabled);
  - the background VRAM monitor (every 30 s: GET /api/ps twice per node, holding the pool's
    lock) and health checker (every 5 s, for a node with 100 more requests: GET /api/tags,
    holding the lock; marks a failing node unavailable): both threads are started
    unconditionally by the constructor, so they are made no-ops here. SOLLOL_MONITORS=1 keeps
    them (the library's default behaviour).
What stays: one GET /api/ps per node at construction (VRAM probe), the pool's own failover loop
(up to one attempt per node per request) and httpx's 3 connect retries per attempt.
"""
import json
import logging
import os
import sys
import threading
import time

os.environ["SOLLOL_ROUTING_LOG"] = "false"
os.environ["SOLLOL_METRICS_BACKEND"] = "disabled"

import sollol.network_observer  # noqa: E402
from sollol.pool import OllamaPool  # noqa: E402
from sollol.routing_strategy import RoutingStrategy  # noqa: E402

sollol.network_observer.REDIS_AVAILABLE = False
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


class QuietPool(OllamaPool):
    """OllamaPool whose background monitor threads exit at once (unless SOLLOL_MONITORS=1)."""

    if os.environ.get("SOLLOL_MONITORS") != "1":
        def _refresh_vram_loop(self):
            pass

        def _health_check_loop(self):
            pass


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SOLLOL_STRATEGY", "round_robin")
    try:
        strategy = RoutingStrategy(name)
    except ValueError:
        sys.exit(f"drive.py: unknown strategy {name!r}; one of: "
                 + ", ".join(s.value for s in RoutingStrategy))
    nodes = [u.strip() for u in os.environ["OPB_NODES"].split(",") if u.strip()]
    if not nodes:
        sys.exit("drive.py: OPB_NODES is empty (an empty list would make SOLLOL scan the network)")
    workers = int(os.environ["OPB_WORKERS"])
    total = int(os.environ["OPB_REQUESTS"])
    run_id, model = os.environ["OPB_RUN_ID"], os.environ["OPB_MODEL"]

    pool = QuietPool(
        nodes=nodes,
        routing_strategy=strategy,
        enable_dask=False,
        enable_ray=False,
        register_with_dashboard=False,
        enable_gpu_redis=False,
        enable_cache=False,
    )
    lock = threading.Lock()
    with open(os.environ["OPB_REPORT"], "a", encoding="utf-8") as report:
        def write(record):
            line = json.dumps(record, default=str) + "\n"
            with lock:
                report.write(line)

        def worker(w):
            for n in range(w, total, workers):
                rid = f"{run_id}-{n}"
                record = {"id": rid, "ok": True, "at_ms": time.time() * 1000}
                start = time.perf_counter()
                try:
                    pool.embed(model, f"hello [rid:{rid}]")
                except Exception as e:  # SOLLOL raises RuntimeError once every node failed
                    record.update(ok=False, error=f"{type(e).__name__}: {e}")
                record["latency_ms"] = (time.perf_counter() - start) * 1000
                write(record)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        write({"stats": pool.get_stats()})
        report.flush()
    pool.stop()


if __name__ == "__main__":
    main()
