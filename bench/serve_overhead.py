"""What the HTTP server costs on top of the pipeline: `sdxl-workload serve` against the very same
pipeline call made in-process.

Both sides run `DiffusersBackend.generate` on the same model with the same requests (prompt,
steps, size, seed per request). The in-process side calls it directly, back to back, in this
process; the server side is a real `sdxl-workload serve` subprocess on a loopback port, driven by
httpx clients here, so its numbers include HTTP, JSON parsing and validation, the queue, the
worker thread hand-off, PNG + base64 encoding and the response bytes.

Scenarios: one client (latency: p50/p95 per request; overhead % = server p50 over in-process p50)
and N concurrent clients (throughput: requests/s against the in-process back-to-back rate, which
is the most one model can do; "no throughput loss" means the ratio stays at ~1).
The in-process and server blocks alternate for `--rounds` rounds so that drift in a shared
machine's load hits both alike; each side gets one warm-up call first.

CPU (default): the built-in `mid` model (256 px, ~50M-parameter UNet) so that per-call compute,
not Python overhead, dominates, as with the real SDXL.
GPU: `--device cuda` (the server's spec says `accelerator: nvidia`, fp16), e.g. with `--model` a prepared SDXL
folder and `--max-batch 1,4 --concurrency 1,8`, reports images/s per max-batch setting.

    .venv/bin/python bench/serve_overhead.py                      # mid model, CPU
    .venv/bin/python bench/serve_overhead.py --steps 4 --requests 6 --rounds 1   # quick look
Results: a table on stdout and JSON in bench/results/serve_overhead.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "mid"], default="mid", help="built-in model size")
    parser.add_argument("--model", help="a pipeline folder instead of the built-in model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per request")
    parser.add_argument("--resolution", type=int, help="image side in pixels (default: the model's)")
    parser.add_argument("--requests", type=int, default=8, help="requests per block (per client count)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating in-process/server rounds")
    parser.add_argument("--concurrency", default="1,4", help="client counts, comma-separated")
    parser.add_argument("--max-batch", default="1", help="server --max-batch values, comma-separated")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on both sides (default 1; 0 = torch's default). On a shared "
                             "machine more threads than free cores make every step wait for a preempted "
                             "thread: 4 mid-model steps took 11-45 s with 2 threads, 2.5 s with 1, on 2 busy cores")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serve_overhead.json")
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_body(index: int, steps: int, side: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": f"a photo of sks person {index}", "num_inference_steps": steps,
                            "seed": 1000 + index}
    if side:
        body.update(width=side, height=side)
    return body


class InProcess:
    """The pipeline call the server makes, made directly."""

    def __init__(self, model: str, device: str) -> None:
        from sdxl_workloads.server.diffusers_backend import DiffusersBackend

        self.backend = DiffusersBackend(model, device=device)
        self.limits = self.backend.load()

    def call(self, body: dict[str, Any]) -> float:
        from sdxl_workloads.server.backends import GenerationParams

        params = GenerationParams(
            prompt=body["prompt"], negative_prompt=None, num_inference_steps=body["num_inference_steps"],
            guidance_scale=5.0, width=body.get("width", self.limits.default_width),
            height=body.get("height", self.limits.default_height), seed=body["seed"])
        began = time.perf_counter()
        self.backend.generate([params], lambda: False)
        if self.backend.device == "cuda":
            import torch

            torch.cuda.synchronize()
        return time.perf_counter() - began

    def block(self, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        began = time.perf_counter()
        latencies = [self.call(body) for body in bodies]
        return {"latencies": latencies, "seconds": time.perf_counter() - began}


class Server:
    def __init__(self, model: str, device: str, max_batch: int, queue: int, threads: int | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self.log = open(ROOT / "bench" / "results" / f"serve_overhead_server_{max_batch}.log", "wb")  # noqa: SIM115
        # The server reads what it serves and how from an SDXLDeployment spec, as in a pod.
        spec = ROOT / "bench" / "results" / f"serve_overhead_spec_{max_batch}.json"
        spec.write_text(json.dumps({
            "fineTune": "bench", "accelerator": "nvidia" if device == "cuda" else "cpu",
            "server": {"maxBatch": max_batch, "queueSize": queue, "requestTimeoutSeconds": 3600}}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sdxl_workloads", "serve", "--spec", str(spec), "--model", model,
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 600
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited early; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not get ready in 10 minutes")
            time.sleep(0.1)

    def block(self, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
        latencies: list[float] = []
        inference: list[float] = []  # the server's own pipeline-call time (Server-Timing header)
        lock = threading.Lock()
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        with httpx.Client(base_url=self.url, timeout=3600, limits=limits) as client:

            def one(body: dict[str, Any]) -> None:
                began = time.perf_counter()
                response = client.post("/v1/generate", json=body)
                elapsed = time.perf_counter() - began
                if response.status_code != 200:
                    raise RuntimeError(f"server answered {response.status_code}: {response.text[:300]}")
                timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
                # Keep each latency next to its own model time (overhead per request).
                with lock:
                    latencies.append(elapsed)
                    inference.append(float(timing["inference"]) / 1000)

            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(one, bodies))
            seconds = time.perf_counter() - began
        return {"latencies": latencies, "seconds": seconds, "inference": inference}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def summarise(blocks: list[dict[str, Any]], images_per_request: int = 1) -> dict[str, float]:
    latencies = [latency for block in blocks for latency in block["latencies"]]
    seconds = sum(block["seconds"] for block in blocks)
    summary = {"requests": len(latencies), "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
               "mean_s": statistics.fmean(latencies), "requests_per_s": len(latencies) / seconds,
               "images_per_s": len(latencies) * images_per_request / seconds}
    inference = [value for block in blocks for value in block.get("inference", [])]
    if inference:
        # Time the server's model thread spent in pipeline calls; with concurrent clients it should
        # match the in-process call time (more = contention in the server process).
        summary["server_inference_p50_s"] = percentile(inference, 50)
        summary["server_inference_mean_s"] = statistics.fmean(inference)
        # Per request: what the client waited beyond the server's own pipeline call (HTTP, JSON,
        # validation, queue hand-off, PNG + base64). Immune to load drift between the two sides.
        beyond = [latency - model for block in blocks
                  for latency, model in zip(block["latencies"], block["inference"], strict=True)]
        summary["beyond_model_call_p50_s"] = percentile(beyond, 50)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT / "workloads"))
    import torch

    from sdxl_workloads.builtin.tiny_model import ensure_tiny_model

    if args.threads:
        torch.set_num_threads(args.threads)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    model = args.model or str(ensure_tiny_model(size=args.size))
    concurrency = [int(c) for c in args.concurrency.split(",")]
    max_batches = [int(b) for b in args.max_batch.split(",")]
    bodies = [request_body(i, args.steps, args.resolution) for i in range(args.requests)]

    in_process = InProcess(model, args.device)
    in_process.call(bodies[0])  # warm-up
    results: dict[str, Any] = {"config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                                          "model": model, "torch_threads": torch.get_num_threads(),
                                          "machine": platform.platform(), "cpus": os.cpu_count()},
                               "in_process": [], "server": {}}
    table: list[tuple[str, ...]] = []
    for max_batch in max_batches:
        server = Server(model, args.device, max_batch, queue=max(concurrency) * 2, threads=args.threads)
        try:
            server.block(bodies[:1], 1)  # warm-up
            base_blocks: list[dict[str, Any]] = []
            served: dict[int, list[dict[str, Any]]] = {c: [] for c in concurrency}
            for _ in range(args.rounds):
                if 1 in concurrency:
                    # One client: alternate request by request, so both sides see the same load.
                    base_block: dict[str, Any] = {"latencies": [], "seconds": 0.0}
                    served_block: dict[str, Any] = {"latencies": [], "inference": [], "seconds": 0.0}
                    for body in bodies:
                        call = in_process.call(body)
                        base_block["latencies"].append(call)
                        base_block["seconds"] += call
                        one = server.block([body], 1)
                        for key in ("latencies", "inference"):
                            served_block[key] += one[key]
                        served_block["seconds"] += one["seconds"]
                    base_blocks.append(base_block)
                    served[1].append(served_block)
                else:
                    base_blocks.append(in_process.block(bodies))
                for clients in (c for c in concurrency if c > 1):
                    served[clients].append(server.block(bodies, clients))
        finally:
            server.stop()
        base = summarise(base_blocks)
        results["in_process"].append({"max_batch": max_batch, **base})
        results["server"][str(max_batch)] = {}
        table.append((f"in-process (max-batch {max_batch} run)", "1", f"{base['p50_s']:.3f}", f"{base['p95_s']:.3f}",
                      f"{base['requests_per_s']:.2f}", "-", "-", f"{base['p50_s']:.3f}", "-"))
        for clients in concurrency:
            stats = summarise(served[clients])
            overhead = (stats["p50_s"] / base["p50_s"] - 1) * 100
            throughput = stats["requests_per_s"] / base["requests_per_s"]
            stats.update(p50_overhead_percent=overhead, throughput_ratio=throughput)
            results["server"][str(max_batch)][str(clients)] = stats
            table.append((f"server --max-batch {max_batch}", str(clients), f"{stats['p50_s']:.3f}",
                          f"{stats['p95_s']:.3f}", f"{stats['requests_per_s']:.2f}",
                          f"{overhead:+.1f}%" if clients == 1 else "(queueing)", f"{throughput:.3f}",
                          f"{stats['server_inference_p50_s']:.3f}",
                          f"{stats['beyond_model_call_p50_s'] * 1000:.1f} ms "
                          f"({stats['beyond_model_call_p50_s'] / base['p50_s'] * 100:.1f}%)" if clients == 1 else "-"))

    header = ("side", "clients", "p50 s", "p95 s", "req/s", "p50 overhead", "throughput vs in-process",
              "model-call p50 s", "beyond model call p50")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    print(f"model {model} on {args.device}, {args.steps} steps, {args.requests} requests x {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()}")
    for row in [header, *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    one = results["server"][str(max_batches[0])].get("1")
    if one is not None:
        print(f"target p50 overhead <= 5%: {'met' if one['p50_overhead_percent'] <= 5 else 'MISSED'} "
              f"({one['p50_overhead_percent']:+.1f}% end to end; the server's time beyond its own pipeline call "
              f"is {one['beyond_model_call_p50_s'] * 1000:.1f} ms per request)")
    many = [results["server"][str(max_batches[0])][str(c)] for c in concurrency if c > 1]
    if many:
        worst = min(m["throughput_ratio"] for m in many)
        print(f"target no throughput loss under concurrency: {'met' if worst >= 0.97 else 'MISSED'} "
              f"(worst ratio {worst:.3f})")
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
