#!/usr/bin/env python3
"""Measures a generated project's `serve`: time to first token for a prompt
with a long shared prefix (a system prompt of about 200 tokens) run from
scratch and with a prompt-cache hit, and requests per minute with 8 clients
at once. Standard library only.

Usage: scripts/bench_serve.py BINARY [--prefix-tokens 200] [--repeats 3]
       [--clients 8] [--requests-per-client 2] [--max-tokens 16]
"""

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time


def start(binary):
    proc = subprocess.Popen(
        [binary, "serve", "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    for line in proc.stderr:
        match = re.search(r"^serving (\S+) on http://([\d.]+):(\d+)", line)
        if match:
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, match.group(1), int(match.group(3))
    raise SystemExit(f"{binary} serve did not start")


def stream_chat(port, body):
    """(seconds to the first text, usage) of a streamed chat request."""
    body = dict(body, stream=True, stream_options={"include_usage": True})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    start = time.monotonic()
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"status {response.status}: {response.read()!r}")
    first, usage = None, None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            if first is None and choice["delta"].get("content"):
                first = time.monotonic() - start
    conn.close()
    return first, usage


def whole_chat(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"status {response.status}: {data!r}")


def system_prompt(binary, tokens):
    """The longest system prompt of at most `tokens` tokens from a repeated
    sentence, by bisection on its word count (`tokenize` loads no weights)."""
    words = "The assistant answers questions about the weather briefly and politely.".split()

    def text(n):
        return " ".join(words[i % len(words)] for i in range(n))

    def count(n):
        out = subprocess.run(
            [binary, "tokenize", "--no-bos", "--text", text(n)],
            capture_output=True, text=True, check=True,
        ).stdout
        return len(out.strip().split(","))

    low, high = 1, 4 * tokens
    while low < high:
        mid = (low + high + 1) // 2
        if count(mid) <= tokens:
            low = mid
        else:
            high = mid - 1
    return text(low)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--prefix-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    proc, model, port = start(args.binary)
    try:
        system = system_prompt(args.binary, args.prefix_tokens)

        def body(question, cache=True):
            return {
                "model": model,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ],
                "temperature": 0,
                "max_tokens": args.max_tokens,
                "cache_prompt": cache,
            }

        cold, warm, prompt_tokens, cached = [], [], 0, 0
        for i in range(args.repeats):
            t, usage = stream_chat(port, body(f"Is it raining in city {i}?", cache=False))
            cold.append(t)
            t, usage = stream_chat(port, body(f"Is it sunny in town {i}?"))
            warm.append(t)
            prompt_tokens, cached = usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]

        failures = []

        def client(c):
            try:
                for r in range(args.requests_per_client):
                    whole_chat(port, body(f"Client {c}, question {r}: will it snow?"))
            except BaseException as e:  # reported below, the run does not count
                failures.append(e)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        start_time = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start_time
        if failures:
            raise SystemExit(f"{len(failures)} clients failed: {failures[0]}")
        total = args.clients * args.requests_per_client
        print(f"model {model}: prompt {prompt_tokens} tokens, {cached} from the cache on a hit")
        print(f"time to first token, from scratch: {statistics.median(cold):.2f} s (median of {len(cold)})")
        print(f"time to first token, cache hit:    {statistics.median(warm):.2f} s (median of {len(warm)})")
        print(
            f"{args.clients} clients x {args.requests_per_client} requests of {args.max_tokens} tokens: "
            f"{total} in {elapsed:.1f} s = {total / elapsed * 60:.1f} requests/min"
        )
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
