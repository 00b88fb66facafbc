"""Server subprocesses, started and always stopped, and the bench's two minimal HTTP servers.

The fast server (`python bench/perf.py --fast-server --port P [--latency S]`) stands in for
the simulator when the simulator is the bottleneck of (a); the plain server (`--plain-server`)
is what a new user would write to test against, the bottleneck of (d). Both answer the PUT in
the spec's shape with the ticket id from the path and the status from the body, so a 200
proves the change as a real server's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from _common.metering import LIVE_SERVERS, process_cpu

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout:g} s")


@dataclass
class ServerProc:
    proc: subprocess.Popen[bytes]
    port: int
    base_url: str

    def ready(self) -> ServerProc:
        wait_for_port(self.port, self.proc)
        return self

    def cpu(self) -> float:
        """CPU seconds the server process has used so far."""
        return process_cpu(self.proc.pid)


@contextlib.contextmanager
def server_process(command: list[str], port: int, log_path: Path) -> Iterator[ServerProc]:
    """Start a server subprocess and always stop it; call `ready()` before using it."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        LIVE_SERVERS.add(proc)
        try:
            yield ServerProc(proc, port, f"http://{HOST}:{port}")
        finally:
            try:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)
            finally:
                LIVE_SERVERS.discard(proc)


# -- the answer both minimal servers give ------------------------------------------------------

_DATE = "2024-05-01T09:00:00.000Z"
_LOCATION = "0f1e2d3c-4b5a-4697-8877-665544332211"


def _fast_answer(head: bytes, body: bytes) -> bytes:
    parts = head.split(b" ", 2)
    path = parts[1].split(b"/") if len(parts) > 2 else []
    if parts[0] != b"PUT" or len(path) != 6 or path[1:4] != [b"support", b"tickets", b"v1"]:
        status, payload = b"404 Not Found", b'{"message":"not found","type":"notFound"}'
    else:
        try:
            new = json.dumps(json.loads(body)["ticket"]["status"])
        except (ValueError, KeyError, TypeError):
            new = None
        if new is None:
            status, payload = b"400 Bad Request", b'{"message":"bad body","type":"badRequest"}'
        else:
            # The spec's required fields, the ticket id from the path and the status from
            # the body: an answer that proves the change, as a real server's would.
            ticket = path[4].decode()
            status = b"200 OK"
            payload = (
                f'{{"activity":{{"id":"{uuid.uuid4()}","createDate":"{_DATE}",'
                f'"ticketRef":"{ticket}","type":"statusUpdated","data":'
                f'{{"status":{new},"previousAttributes":{{"status":"new"}}}}}},'
                f'"ticket":{{"id":"{ticket}","status":{new},"number":1,"type":"other",'
                f'"description":"bench","locationRef":"{_LOCATION}",'
                f'"createDate":"{_DATE}","updateDate":"{_DATE}"}}}}'
            ).encode()
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )


def _serve_until_signal(start: Callable[[], Awaitable[asyncio.Server]]) -> None:
    """Serve what `start` opens until SIGINT or SIGTERM (how server_process stops it)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with await start():
            await stop.wait()

    asyncio.run(main())


# -- the bench's own minimal server ------------------------------------------------------------


class _FastHTTP(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only: enough for the PUT of the bench."""

    latency = 0.0  # seconds before each answer is written

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        answers = []
        while (end_of_head := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end_of_head]
            length = 0
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                eol = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : eol if eol >= 0 else len(head)])
            end = end_of_head + 4 + length
            if len(buffer) < end:
                break
            answers.append(_fast_answer(head[: head.find(b"\r\n")], buffer[end_of_head + 4 : end]))
            buffer = buffer[end:]
        self.buffer = buffer
        if answers:
            if self.latency > 0:
                asyncio.get_running_loop().call_later(self.latency, self._write, answers)
            else:
                self._write(answers)

    def _write(self, answers: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(answers))


def fast_server_main(port: int, latency: float) -> None:
    _FastHTTP.latency = latency

    async def start() -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(_FastHTTP, HOST, port, backlog=1024)

    _serve_until_signal(start)


# -- a plain asyncio server: what a new user would write to test against -----------------------


async def _plain_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive with asyncio streams, one request at a time per connection.

    The answer is the spec's shape and proves the change: the ticket id from the
    path, the status from the body.
    """
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            writer.write(_fast_answer(head[: head.find(b"\r\n")], body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def plain_server_main(port: int) -> None:
    async def start() -> asyncio.Server:
        return await asyncio.start_server(_plain_client, HOST, port, backlog=1024)

    _serve_until_signal(start)
