#!/usr/bin/env python3
"""Driver program for `harness client`: the official `ollama` Python client, no pool.

The no-pool reference: worker w talks only to node w % len(nodes) (a static split), with its
own ollama.Client (httpx, library defaults: no retries, no timeout). Run with the venv from
examples/clients/sollol/install.sh, which pins the `ollama` package too.

The driver protocol (OPB_* variables, one report line per request with at_ms, a final stats
line) is in docs/clients.md and in sollol/drive.py's header.
Each request is one Client.embed(model, input) call: POST /api/embed {"model", "input"}.
"""
import json
import os
import sys
import threading
import time

from ollama import Client


def main():
    nodes = [u.strip() for u in os.environ["OPB_NODES"].split(",") if u.strip()]
    if not nodes:
        sys.exit("drive.py: OPB_NODES is empty")
    workers = int(os.environ["OPB_WORKERS"])
    total = int(os.environ["OPB_REQUESTS"])
    run_id, model = os.environ["OPB_RUN_ID"], os.environ["OPB_MODEL"]

    lock = threading.Lock()
    stats = {"total_requests": 0, "successful_requests": 0, "failed_requests": 0}
    with open(os.environ["OPB_REPORT"], "a", encoding="utf-8") as report:
        def write(record):
            line = json.dumps(record) + "\n"
            with lock:
                report.write(line)
                if "ok" in record:
                    stats["total_requests"] += 1
                    stats["successful_requests" if record["ok"] else "failed_requests"] += 1

        def worker(w):
            client = Client(host=nodes[w % len(nodes)])
            for n in range(w, total, workers):
                rid = f"{run_id}-{n}"
                record = {"id": rid, "ok": True, "at_ms": time.time() * 1000}
                start = time.perf_counter()
                try:
                    client.embed(model=model, input=f"hello [rid:{rid}]")
                except Exception as e:  # ollama.ResponseError, httpx errors, ConnectionError
                    record.update(ok=False, error=f"{type(e).__name__}: {e}")
                record["latency_ms"] = (time.perf_counter() - start) * 1000
                write(record)
            client.close()

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with lock:
            report.write(json.dumps({"stats": dict(stats)}) + "\n")
        report.flush()


if __name__ == "__main__":
    main()
