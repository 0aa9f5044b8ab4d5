#!/usr/bin/env python3
"""Sends many large bodies at once with real HTTP clients and checks that every refusal
reaches the client as the server's answer (429 with Retry-After, or 413), not as a reset
connection or a broken pipe. The server answers before it reads a refused body; a client that
sends the body anyway must still read that answer.

Usage: refusals_check.py HOST:PORT MIB CONCURRENCY
Prints one line per client kind; exits non-zero naming every request that failed.
"""
import http.client
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.http as tritonhttp
import urllib3
from tritonclient.utils import InferenceServerException

PATH = "/v2/models/mlp/infer"


def with_http_client(addr, body):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.getheader("Retry-After"), r.read().decode(errors="replace")
    finally:
        conn.close()


def with_urllib3(addr, body):
    # What `requests` sends with underneath.
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=60))
    r = pool.request("POST", f"http://{addr}{PATH}", body=body, headers={"Content-Type": "application/json"})
    return r.status, r.headers.get("Retry-After"), r.data.decode(errors="replace")


def with_tritonclient(addr, rows):
    client = tritonhttp.InferenceServerClient(url=addr, network_timeout=60.0, connection_timeout=60.0)
    data = np.zeros((rows, 64), dtype=np.float32)
    inp = tritonhttp.InferInput("features", list(data.shape), "FP32")
    inp.set_data_from_numpy(data, binary_data=True)
    try:
        client.infer("mlp", [inp])
        return 200, None, ""
    except InferenceServerException as e:
        # The server's own message: its status and text, not a transport error.
        return int(e.status() or 0), None, str(e.message())
    finally:
        client.close()


def run(kind, send, jobs):
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(send) for _ in range(jobs)]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as e:  # noqa: BLE001 - every transport failure is the finding
                results.append((type(e).__name__, None, str(e)[:200]))
    bad = [r for r in results if r[0] not in (200, 400, 413, 429)]
    refused = [r for r in results if r[0] in (413, 429)]
    counts = {}
    for r in results:
        counts[r[0]] = counts.get(r[0], 0) + 1
    print(f"{kind}: {jobs} requests: {dict(sorted(counts.items(), key=str))}")
    problems = [f"{kind}: {r[0]}: {r[2]}" for r in bad]
    for r in refused:
        if r[0] == 429 and kind != "tritonclient" and r[1] != "1":
            problems.append(f"{kind}: a 429 without Retry-After: 1")
        if "overloaded" not in r[2] and "larger than the limit" not in r[2]:
            problems.append(f"{kind}: a refusal without the server's reason: {r[2][:120]}")
    if not refused:
        problems.append(f"{kind}: nothing was refused: the check did not load the server")
    return problems


def main():
    addr, mib, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    body = b"[" * (mib << 20)
    rows = (mib << 20) // (64 * 4)
    problems = []
    problems += run("http.client", lambda: with_http_client(addr, body), jobs)
    problems += run("urllib3", lambda: with_urllib3(addr, body), jobs)
    problems += run("tritonclient", lambda: with_tritonclient(addr, rows), jobs)
    if problems:
        print("\n".join(problems))
        return 1
    print("refusals: every client read the server's answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
