"""The script a user writes in ten minutes: the baseline `bulk` is measured against.

aiohttp, a semaphore, asyncio.gather over every row, no journal, no report.
Options add only what such a user would add when asked: a fixed pace
(`--rate`, one sleep per request) and "retry a 429 once after a second".
Everything else (5xx, dropped connections) is simply lost.

    SPACEBRING_BASE_URL=... SPACEBRING_CLIENT_ID=... SPACEBRING_CLIENT_SECRET=... \
        python bench/naive.py tickets.csv --status closed --concurrency 64
"""

import argparse
import asyncio
import base64
import csv
import os
import time


def read_ids(path: str) -> list[str]:
    with open(path, newline="") as handle:
        return [row["ticket_id"] for row in csv.DictReader(handle)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("--status", default="closed")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--retry-429", action="store_true")
    return parser.parse_args()


async def main() -> None:
    args = parse_args()

    import aiohttp

    base = os.environ["SPACEBRING_BASE_URL"]
    token = base64.b64encode(
        f"{os.environ['SPACEBRING_CLIENT_ID']}:{os.environ['SPACEBRING_CLIENT_SECRET']}".encode()
    ).decode()
    ids = read_ids(args.input)

    semaphore = asyncio.Semaphore(args.concurrency)
    start = time.monotonic()
    ok = failed = 0
    next_slot = start

    async def update(session: aiohttp.ClientSession, ticket_id: str) -> None:
        nonlocal ok, failed, next_slot
        async with semaphore:
            for _ in range(2 if args.retry_429 else 1):
                if args.seconds and time.monotonic() - start > args.seconds:
                    return
                if args.rate:
                    wait = next_slot - time.monotonic()
                    next_slot = max(next_slot, time.monotonic()) + 1 / args.rate
                    if wait > 0:
                        await asyncio.sleep(wait)
                try:
                    async with session.put(
                        f"{base}/support/tickets/v1/{ticket_id}/status",
                        json={"ticket": {"status": args.status}},
                    ) as response:
                        await response.read()
                        if response.status == 429 and args.retry_429:
                            await asyncio.sleep(1)
                            continue
                        if response.status == 200:
                            ok += 1
                        else:
                            failed += 1
                        return
                except aiohttp.ClientError:
                    failed += 1
                    return

    headers = {"Authorization": f"Basic {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        await asyncio.gather(*(update(session, i) for i in ids))
    elapsed = time.monotonic() - start
    print(f"ok={ok} failed={failed} elapsed={elapsed:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
