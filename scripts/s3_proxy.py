"""An HTTP proxy on loopback between a handler and its S3 server, for the bench and the tests:
it puts the bucket "at a distance" (added latency) and injects the faults S3 has in
production, switchable at run time.

Used in-process by the bench's distance task (bench/distance.py, docs/performance.md,
"Misses at a distance"), and as a process by the fault tests (tests/tests/local_edge_faults.rs,
infra/edge-shim/test/faults.test.mjs) and the soak (scripts/soak):

    python3 scripts/s3_proxy.py --upstream 127.0.0.1:5000 [--delay-ms 150] [--log]

prints one JSON line, {"proxy": URL, "control": URL}, then serves until killed. The control
listener takes `POST /fault` with a JSON body (every field optional; what is left out is
cleared) and answers the state, also on `GET /fault`:

    {"mode": "reset", "delay_ms": 0, "skip": 0}  →  {"mode": …, "delay_ms": …, "skip": …,
                                                      "requests": N, "faulted": F}

Faults (`mode`), decided per request once the request has been read:
- `none`: forwarded;
- `reset`: the client connection is reset (RST), nothing forwarded;
- `hang`: never answered, nothing forwarded; the connection is held until the client closes it
  (a server that accepts and hangs);
- `500`: 500 `InternalError`, `503`: 503 `SlowDown`, each with S3's XML error body, nothing
  forwarded;
- `truncate`: forwarded, but a successful answer's body is cut in half under its full
  Content-Length and the connection closed (error answers and bodiless ones pass whole);
- `flaky`: every other client connection (odd-numbered) is reset at its request, the others
  are forwarded — a connection that worked keeps working.
`skip` lets that many requests pass before the fault starts (to hit a later step of a
request: the render's GET or PUT rather than the first lookups); `requests` and `faulted`
count since the fault was set, so a test can check that its fault was really met.

Latency (`delay_ms`, any mode), the model of one round trip time D:
- every HTTP request reaches the server D after its last byte left the client (the response
  comes back at once), so a request costs D, once, whatever its size;
- a new client connection costs one more D before its first request can go (TCP's handshake;
  TLS would add at least one more, which this does not model: the S3 server here is plain HTTP),
  except on listeners started as `open_listeners` (connections taken as already open, like
  CloudFront's to its origin, shared by all viewers);
- `Expect: 100-continue` costs a D for the `100 Continue` and a D for the request.

It speaks HTTP/1.1 to its clients and keeps their connections alive between requests (like
S3 does), while each request goes to the upstream server on a fresh connection: moto's
server answers `Connection: close`, which would otherwise make every request pay a new
connection. Requests are parsed only for their framing (Content-Length or chunked). With
`log=True` each is logged (listener, connection, first on its connection, method, target,
times), so a harness can count the store requests a handler made and its sequential round
trips. Standard library only: it runs on any Python 3.10+.
"""

import argparse
import asyncio
import json
import socket
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass

HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"expect"}
MODES = ("none", "reset", "hang", "500", "503", "truncate", "flaky")
# Answered by the proxy itself, as S3 words them.
S3_ERRORS = {
    "500": (b"500 Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "503": (b"503 Slow Down", "SlowDown", "Please reduce your request rate."),
}


# A connection ends quietly on these: the peer went away, sent what is not HTTP/1.x, or stop()
# cancelled it (not an unretrieved exception).
_GONE = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, asyncio.CancelledError)


@dataclass
class Logged:
    listener: str
    conn: int
    new_conn: bool  # the first request on its client connection (it paid the handshake)
    method: str
    target: str
    arrived: float  # monotonic seconds: the request's first byte at the proxy
    sent: float  # when it went to the upstream server (arrival of its last byte + delay)
    status: int = 0
    done: float = 0.0  # its answer fully read from the upstream server (then written back)


@dataclass
class Fault:
    mode: str = "none"
    skip: int = 0
    requests: int = 0  # seen since the fault was set
    faulted: int = 0  # of which the fault hit

    @staticmethod
    def parse(spec: dict) -> "Fault":
        mode = str(spec.get("mode", "none"))
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        skip = int(spec.get("skip", 0))
        if skip < 0:
            raise ValueError("skip must be ≥ 0")
        return Fault(mode, skip)


class S3Proxy:
    """An asyncio proxy with one or more named listeners, all forwarding to one upstream,
    running on its own thread (start() / stop()); `delay_ms` and the fault (`set_fault`) may
    change at any time."""

    def __init__(self, upstream: tuple[str, int], delay_ms: float = 0.0, log: bool = True):
        self.upstream = upstream
        self.delay_ms = delay_ms
        self.ports: dict[str, int] = {}
        self._keep_log = log
        self._log: list[Logged] = []
        self._lock = threading.Lock()
        self._fault = Fault()
        self._conns = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._open_listeners: set[str] = set()

    # ---- control (any thread) ------------------------------------------------------------

    def start(self, listeners: list[str], open_listeners: tuple[str, ...] = (), control: bool = False) -> "S3Proxy":
        """Listeners on ephemeral ports (`ports`, `url()`); those in `open_listeners` charge
        no handshake for a new connection. `control`: a listener named "control" for
        `/fault` (the CLI's way to switch faults)."""
        self._open_listeners = set(open_listeners)
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            handlers = [(name, lambda r, w, n=name: self._client(n, r, w)) for name in listeners]
            if control:
                handlers.append(("control", self._control))
            for name, handler in handlers:
                server = self._loop.run_until_complete(asyncio.start_server(handler, "127.0.0.1", 0))
                self._servers.append(server)
                self.ports[name] = server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="s3-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    @property
    def upstream_url(self) -> str:
        return f"http://{self.upstream[0]}:{self.upstream[1]}"

    def url(self, listener: str) -> str:
        return f"http://127.0.0.1:{self.ports[listener]}"

    def set_fault(self, spec: dict) -> dict:
        """Set the fault and latency (fields left out are cleared); returns the state."""
        fault = Fault.parse(spec)
        delay = float(spec.get("delay_ms", 0.0))
        with self._lock:
            self._fault = fault
            self.delay_ms = delay
        return self.state()

    def state(self) -> dict:
        with self._lock:
            f = self._fault
            return {"mode": f.mode, "delay_ms": self.delay_ms, "skip": f.skip,
                    "requests": f.requests, "faulted": f.faulted}

    def take(self) -> list[Logged]:
        """The requests logged since the last take (finished or not), in arrival order."""
        with self._lock:
            log, self._log = self._log, []
        return sorted(log, key=lambda r: r.arrived)

    def stop(self) -> None:
        if not self._loop:
            return

        async def close() -> None:
            for s in self._servers:
                s.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    # ---- the proxy (its loop's thread) ------------------------------------------------------

    def _delay(self) -> float:
        return max(0.0, self.delay_ms) / 1000.0

    def _fault_for(self, conn: int) -> str:
        """The fault this request meets, counted."""
        with self._lock:
            f = self._fault
            f.requests += 1
            if f.mode == "none" or f.requests <= f.skip or (f.mode == "flaky" and conn % 2 == 0):
                return "none"
            f.faulted += 1
            return f.mode

    async def _client(self, listener: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns += 1
        conn = self._conns
        # The handshake: nothing the client sends reaches the server before one round trip.
        usable_at = time.monotonic() + (0.0 if listener in self._open_listeners else self._delay())
        first = True
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                arrived, request_line, headers = head
                method, target = _request_line(request_line)
                if headers.get(b"expect", b"").lower() == b"100-continue":
                    # The client waits for the server's go-ahead before sending the body.
                    await _sleep_until(max(arrived, usable_at) + self._delay())
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                body = await _read_body(reader, headers)
                due = max(time.monotonic(), usable_at) + self._delay()
                entry = Logged(listener, conn, first, method, target, arrived, due)
                first = False
                if self._keep_log:
                    with self._lock:
                        self._log.append(entry)
                await _sleep_until(due)
                fault = self._fault_for(conn)
                if fault in ("reset", "flaky"):
                    _reset(writer)
                    return
                if fault == "hang":
                    while await reader.read(65536):  # until the client gives up
                        pass
                    return
                if fault in S3_ERRORS:
                    status, answer = _s3_error(fault, method)
                else:
                    status, answer, body_at = await self._forward(request_line, headers, body, method)
                    if fault == "truncate" and 200 <= status < 300 and len(answer) - body_at > 1:
                        writer.write(answer[: body_at + (len(answer) - body_at) // 2])
                        await writer.drain()
                        return  # closed under the announced Content-Length
                entry.status, entry.done = status, time.monotonic()
                writer.write(answer)
                await writer.drain()
                if headers.get(b"connection", b"").lower() == b"close":
                    return
        except _GONE:
            return
        finally:
            writer.close()

    async def _forward(self, request_line: bytes, headers: dict, body: bytes, method: str) -> tuple[int, bytes, int]:
        """The request to the upstream on a fresh connection; its answer re-framed for a
        kept-alive client connection, and where the answer's body starts in it."""
        r, w = await asyncio.open_connection(*self.upstream)
        try:
            out = [request_line]
            for name, value in headers.items():
                if name not in HOP_BY_HOP:
                    out.append(name + b": " + value)
            out.append(b"connection: close")
            w.write(b"\r\n".join(out) + b"\r\n\r\n" + body)
            await w.drain()
            while True:
                head = await _read_head(r)
                if head is None:
                    raise ConnectionError("the upstream closed without an answer")
                _, status_line, rheaders = head
                status = int(status_line.split()[1])
                if status >= 200 or status == 101:
                    break  # 1xx interim answers are dropped (the client asked for none)
            if method == "HEAD" or status in (204, 304):
                rbody = b""
            elif b"content-length" in rheaders or b"transfer-encoding" in rheaders:
                rbody = await _read_body(r, rheaders)
            else:
                rbody = await r.read()  # framed by the close
                rheaders[b"content-length"] = str(len(rbody)).encode()
            lines = [status_line] + [n + b": " + v for n, v in rheaders.items() if n not in HOP_BY_HOP]
            head = b"\r\n".join(lines) + b"\r\n\r\n"
            return status, head + rbody, len(head)
        finally:
            w.close()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """`GET /fault` → the state; `POST /fault` + JSON → set, then the state."""
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                _, request_line, headers = head
                method, target = _request_line(request_line)
                body = await _read_body(reader, headers)
                status = b"200 OK"
                try:
                    if target != "/fault":
                        status, answer = b"404 Not Found", {"error": "use GET or POST /fault"}
                    elif method == "POST":
                        answer = self.set_fault(json.loads(body or b"{}"))
                    else:
                        answer = self.state()
                except (ValueError, TypeError, AttributeError) as e:
                    status, answer = b"400 Bad Request", {"error": str(e)}
                data = json.dumps(answer).encode()
                writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                             b"content-length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
                await writer.drain()
        except _GONE:
            return
        finally:
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN, as a dropped connection looks to its peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _s3_error(mode: str, method: str) -> tuple[int, bytes]:
    status, code, message = S3_ERRORS[mode]
    request_id = uuid.uuid4().hex[:16].upper()
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{request_id}</RequestId><HostId>s3-proxy</HostId></Error>").encode()
    if method == "HEAD":  # a HEAD answer has no body; S3 sends just the status
        body = b""
    head = (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/xml\r\nx-amz-request-id: "
            + request_id.encode() + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
    return int(status.split()[0]), head + body


async def _sleep_until(t: float) -> None:
    wait = t - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)


async def _read_head(reader: asyncio.StreamReader) -> tuple[float, bytes, dict] | None:
    """(arrival of its first byte, start line, lowercase header dict), or None at a clean EOF."""
    first = await reader.read(1)
    if not first:
        return None
    arrived = time.monotonic()
    raw = first + await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + b", " + value if name in headers else value
    return arrived, lines[0], headers


def _request_line(line: bytes) -> tuple[str, str]:
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request line: {line[:80]!r}")
    return parts[0], parts[1]


async def _read_body(reader: asyncio.StreamReader, headers: dict) -> bytes:
    """The message body by its framing. Chunked bodies are kept as sent (chunk framing and
    trailers included), so they are forwarded unchanged."""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = await reader.readuntil(b"\r\n")
                    out += line
                    if line == b"\r\n":
                        return bytes(out)
            out += await reader.readexactly(size + 2)
    length = int(headers.get(b"content-length", b"0"))
    return await reader.readexactly(length) if length else b""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="round trip time D")
    ap.add_argument("--fault", choices=MODES, default="none", help="the fault to start with")
    ap.add_argument("--log", action="store_true", help="print each request on stderr")
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    proxy = S3Proxy((host, int(port)), log=args.log).start(["proxy"], control=True)
    proxy.set_fault({"mode": args.fault, "delay_ms": args.delay_ms})
    print(json.dumps({"proxy": proxy.url("proxy"), "control": proxy.url("control")}), flush=True)
    pending: list[Logged] = []
    try:
        while True:
            time.sleep(1)
            if not args.log:
                continue
            pending += proxy.take()
            for r in (r for r in pending if r.done):
                print(f"conn {r.conn}{'*' if r.new_conn else ' '} {r.method} {r.target} → {r.status}",
                      file=sys.stderr, flush=True)
            pending = [r for r in pending if not r.done]
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
