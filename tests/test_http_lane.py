"""The HTTP fast lane (jarvis_dns/http/lane.py) on a real server on loopback: heartbeats,
busy flips and discovery it answers are answered as aiohttp answers them (status, headers, JSON,
metrics), requests keep their order on one connection whoever answers them, and what
it cannot frame or does not serve goes to aiohttp unchanged."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import app_config, running_app

from jarvis_dns.app import App
from jarvis_dns.http import lane as lane_module
from jarvis_dns.http import site
from jarvis_dns.http.lane import MAX_HEAD, UNFRAMED, Head, Lane, frame

Reply = tuple[int, dict[str, str], bytes]
TIMES = ("registered_at", "last_heartbeat", "status_since")


def request(method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def beat(svc: str, iid: object, body: bytes = b"") -> bytes:
    return request("PUT", f"/v1/services/{svc}/instances/{iid}/heartbeat", body)


def flip(svc: str, iid: object, body: bytes) -> bytes:
    return request("PUT", f"/v1/services/{svc}/instances/{iid}/status", body)


def discover(body: bytes) -> bytes:
    return request("POST", "/v1/discover", body)


def register(svc: str, iid: int) -> bytes:
    body = {"service_type": svc, "instance_id": iid, "host": "127.0.0.1", "port": 8000 + iid}
    return request("POST", "/v1/instances", json.dumps(body).encode())


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    async with asyncio.timeout(5):
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(head[0].split()[1]), headers, body


class Recorder:
    """What the lane answered itself (a wrapper over the real Lane.answer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answered: list[bytes] = []  # "METHOD target" of each
        real = Lane.answer

        def answer(lane: Lane, head: Head, client: str) -> Any:
            reply = real(lane, head, client)
            if reply is not None:
                self.answered.append(head.method + b" " + head.target)
            return reply

        monkeypatch.setattr(Lane, "answer", answer)

    def clear(self) -> None:
        self.answered.clear()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return Recorder(monkeypatch)


def server(tmp_path: Path, **settings: object) -> Any:
    """The real App on loopback (memory://), started and stopped around the block."""
    return running_app(app_config(tmp_path, **settings))


async def exchange(app: App, *wires: bytes) -> list[Reply]:
    """Every request in one write, the replies in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    try:
        writer.write(b"".join(wires))
        return [await read_reply(reader) for _ in wires]
    finally:
        writer.close()


async def one_by_one(app: App, *wires: bytes) -> list[Reply]:
    """Each request after the reply to the one before, on one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    replies = []
    try:
        for wire in wires:
            writer.write(wire)
            replies.append(await read_reply(reader))
    finally:
        writer.close()
    return replies


def comparable(reply: Reply) -> tuple[int, str, str | None, Any]:
    status, headers, body = reply
    data = json.loads(body)
    for name in TIMES:
        if isinstance(data, dict):
            data.pop(name, None)
    return status, headers["content-type"], headers.get("x-jarvis-index"), data


CASES = {
    "beat": beat("api", 1),
    "beat with metrics": beat("api", 1, b'{"metrics": {"cpu": 0.5}}'),
    "beat that flips busy": beat("api", 2, b'{"busy": true}'),
    "beat of an unknown instance": beat("api", 99),
    "beat with a bad name": beat("API!", 1),
    "beat with malformed JSON": beat("api", 1, b"{nope"),
    "beat with an unknown field": beat("api", 1, b'{"colour": "red"}'),
    "beat with a bad busy": beat("api", 1, b'{"busy": "yes"}'),
    "flip busy": flip("api", 3, b'{"busy": true}'),
    "flip to maintenance": flip("api", 3, b'{"status": "maintenance"}'),
    "flip with nothing": flip("api", 3, b"{}"),
    "flip with a bad status": flip("api", 3, b'{"status": "asleep"}'),
    "flip of an unknown instance": flip("api", 98, b'{"busy": true}'),
    "flip with no body": flip("api", 3, b""),
    "flip with a bad id": flip("api", "a_b", b'{"busy": true}'),
    "discover": discover(b'{"service_type": "api"}'),
    "discover by key": discover(b'{"service_type": "api", "strategy": "hash", "key": "u1"}'),
    "discover with requirements": discover(
        b'{"service_type": "api", "requirements": {"status": "active"}}'
    ),
    "discover none": discover(b'{"service_type": "web"}'),
    "discover without a type": discover(b'{"requirements": {}}'),
    "discover with a bad strategy": discover(b'{"service_type": "api", "strategy": "best"}'),
    "discover with no body": discover(b""),
    "register anew": register("api", 4),
    "register again": register("api", 1),
    "register without a host": request(
        "POST", "/v1/instances", b'{"service_type": "api", "instance_id": 5, "port": 80}'
    ),
    "register with a bad port": request(
        "POST", "/v1/instances", b'{"service_type": "api", "instance_id": 6, "port": 0}'
    ),
    "register with an unknown field": request(
        "POST", "/v1/instances", b'{"service_type": "api", "instance_id": 6, "port": 80, "x": 1}'
    ),
    "register with malformed JSON": request("POST", "/v1/instances", b'{"service_type": '),
}


@pytest.mark.parametrize("case", CASES)
async def test_the_lane_answers_as_aiohttp_does(
    tmp_path: Path, recorder: Recorder, case: str
) -> None:
    answers, lane_answered = [], []
    for fast in (True, False):
        async with server(tmp_path / str(fast), http_fast_lane=fast) as app:
            setup = [register("api", i) for i in (1, 2, 3)]
            assert [r[0] for r in await exchange(app, *setup)] == [201, 201, 201]
            recorder.clear()
            (reply,) = await exchange(app, CASES[case])
            answers.append(comparable(reply))
            lane_answered.append(len(recorder.answered))
    assert answers[0] == answers[1]
    assert lane_answered == [1, 0]  # the lane answered it with the lane on, not off


WIRES = [
    register("api", 1),  # the lane, awaiting a durable commit
    request("GET", "/v1/services/api/instances/1"),  # aiohttp
    beat("api", 1),  # the lane
    register("api", 2),
    flip("api", 2, b'{"busy": true}'),  # the lane, awaiting a commit
    beat("api", 2, b'{"busy": false}'),  # the lane, a commit too
    request("GET", "/v1/services/api/instances/2"),  # aiohttp
    beat("api", 1),
]


async def test_one_connection_shared_by_the_lane_and_aiohttp(
    tmp_path: Path, recorder: Recorder
) -> None:
    async with server(tmp_path) as app:
        replies = await one_by_one(app, *WIRES)
        assert [r[0] for r in replies] == [201, 200, 200, 201, 200, 200, 200, 200]
        assert json.loads(replies[4][2])["busy"] is True
        assert json.loads(replies[5][2])["busy"] is False
        assert json.loads(replies[6][2])["busy"] is False
        assert len(recorder.answered) == 6 and not any(b"GET" in a for a in recorder.answered)


async def test_pipelined_requests_keep_their_order(tmp_path: Path, recorder: Recorder) -> None:
    async with server(tmp_path) as app:
        # The lane answers the first; while aiohttp holds a request, it takes the rest.
        replies = await exchange(app, *WIRES, beat("api", 2))
        assert [r[0] for r in replies] == [201, 200, 200, 201, 200, 200, 200, 200, 200]
        assert json.loads(replies[4][2])["busy"] is True
        assert json.loads(replies[5][2])["busy"] is False
        assert json.loads(replies[6][2])["busy"] is False  # read after the beat landed
        assert recorder.answered[0] == b"POST /v1/instances"


async def test_a_request_arriving_byte_by_byte(tmp_path: Path, recorder: Recorder) -> None:
    async with server(tmp_path) as app:
        await exchange(app, register("api", 1))
        recorder.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
        for byte in flip("api", 1, b'{"busy": true}'):
            writer.write(bytes([byte]))
            await writer.drain()
        status, headers, body = await read_reply(reader)
        writer.close()
        assert status == 200 and json.loads(body)["busy"] is True
        assert headers["x-jarvis-index"] == str(app.view.index)
        assert len(recorder.answered) == 1


async def test_what_it_cannot_frame_goes_to_aiohttp(tmp_path: Path, recorder: Recorder) -> None:
    async with server(tmp_path) as app:
        await exchange(app, register("api", 1))
        recorder.clear()
        chunked = (
            b"PUT /v1/services/api/instances/1/heartbeat HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'e\r\n{"busy": true}\r\n0\r\n\r\n'
        )
        replies = await exchange(app, chunked, beat("api", 1))
        assert [r[0] for r in replies] == [200, 200]
        assert app.view.find("api", 1).busy is True  # type: ignore[union-attr]
        assert recorder.answered == []  # aiohttp keeps that connection


async def test_expect_continue_is_aiohttps(tmp_path: Path) -> None:
    async with server(tmp_path) as app:
        await exchange(app, register("api", 1))
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
        body = b'{"busy": true}'
        writer.write(
            b"PUT /v1/services/api/instances/1/status HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        writer.write(body)
        status, _, reply = await read_reply(reader)
        writer.close()
        assert status == 200 and json.loads(reply)["busy"] is True


async def test_a_request_split_inside_its_body(tmp_path: Path) -> None:
    async with server(tmp_path) as app:
        await exchange(app, register("api", 1))
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
        wire = flip("api", 1, b'{"busy": true}')
        writer.write(wire[:-5])  # most likely, the head goes to aiohttp, which waits
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(wire[-5:] + beat("api", 1))
        first, second = await read_reply(reader), await read_reply(reader)
        writer.close()
        assert (first[0], json.loads(first[2])["busy"]) == (200, True)
        assert second[0] == 200


async def test_with_acl_the_lane_declines(tmp_path: Path, recorder: Recorder) -> None:
    async with server(tmp_path, acl=True, acl_bootstrap_token="boot") as app:
        ((status, _, body),) = await exchange(app, beat("api", 1))
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
        assert recorder.answered == []


async def test_the_lane_counts_its_requests(tmp_path: Path) -> None:
    async with server(tmp_path) as app:
        await exchange(app, register("api", 1), beat("api", 1), beat("api", 1), beat("api", 7))
        requests = app.metrics.counter("jarvis_http_requests_total").values
        route = "PUT /v1/services/{svc}/instances/{id}/heartbeat"
        assert requests[(route, "200")] == 2 and requests[(route, "404")] == 1
        duration = app.metrics.histogram("jarvis_http_request_duration_seconds")
        assert duration.cell(route).count == 3


async def test_a_client_that_does_not_read_gets_aiohttps_flow_control(
    tmp_path: Path, recorder: Recorder
) -> None:
    async with server(tmp_path) as app:
        await exchange(app, register("api", 1))
        recorder.clear()
        wire = beat("api", 1)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
            sock.connect(("127.0.0.1", app.http_port))
            sock.setblocking(False)
            out, sent, stalled = b"", 0, 0
            # Beats, never reading an answer, until the server stops reading (a second
            # without progress); bounded at 200,000 beats.
            while stalled < 50 and sent < 200_000 * len(wire):
                out = out or wire * 64
                try:
                    done = sock.send(out)
                except BlockingIOError:
                    stalled += 1
                    await asyncio.sleep(0.02)
                    continue
                out, sent, stalled = out[done:], sent + done, 0
                await asyncio.sleep(0)  # the server shares this loop
        beats = sent // len(wire)
        # The lane answered until site.MAX_UNREAD of its answers waited unread, then left the
        # connection to aiohttp, which stopped reading.
        assert stalled == 50 and 0 < len(recorder.answered) < beats


async def test_an_active_connection_outlives_the_idle_timeout(tmp_path: Path) -> None:
    async with server(tmp_path, http_idle_timeout_s=0.5) as app:
        await exchange(app, register("api", 1))
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
        for _ in range(8):  # 1.6 s of beats, 0.2 s apart, on one connection
            writer.write(beat("api", 1))
            assert (await read_reply(reader))[0] == 200
            await asyncio.sleep(0.2)
        writer.close()


async def test_beats_sent_with_the_end_of_the_stream_are_answered(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lane takes requests in turns, here one connection a turn (no time for a
    # second): the end of a stream, which makes aiohttp close the connection, comes in
    # the next poll while the rota still holds the requests of most of them.
    monkeypatch.setattr(site, "TURN_S", 0.0)
    async with server(tmp_path) as app:
        await exchange(app, register("api", 1))
        recorder.clear()
        streams = [await asyncio.open_connection("127.0.0.1", app.http_port) for _ in range(8)]
        for _, writer in streams:
            writer.write(beat("api", 1))
            writer.write_eof()
        async with asyncio.timeout(5):
            answers = [await reader.read() for reader, _ in streams]
        for _, writer in streams:
            writer.close()
        assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") for a in answers)
        assert len(recorder.answered) == 8


def test_frame_takes_whole_requests() -> None:
    wire = beat("api", 1, b'{"busy": true}')
    buf = bytearray(wire + b"PUT /v1")
    head = frame(buf, 1000)
    assert isinstance(head, Head)
    assert (head.method, head.body, head.end) == (b"PUT", b'{"busy": true}', len(wire))
    assert head.headers[b"content-type"] == b"application/json"
    assert frame(bytearray(wire[:20]), 1000) is None  # the head is still coming
    partial = frame(bytearray(wire[:-3]), 1000)
    assert isinstance(partial, Head) and partial.body is None


@pytest.mark.parametrize(
    "wire",
    [
        b"PUT / HTTP/1.0\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        b"PUT /x HTTP/1.1\r\nContent-Length: -2\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nBad Header\r\n\r\n",
        b"PUT /x HTTP/1.1\r\n" + b"X-Long: " + b"a" * MAX_HEAD,
        b"PUT /x HTTP/1.1\nHost: x\n\n",  # bare LF line ends
    ],
)
def test_frame_leaves_the_unusual_to_aiohttp(wire: bytes) -> None:
    assert frame(bytearray(wire), 1000) is UNFRAMED


def test_the_lane_serves_two_routes_only() -> None:
    def route(target: bytes, method: bytes = b"PUT", **headers: bytes) -> object:
        named = {name.encode(): value for name, value in headers.items()}
        return lane_module._route(Head(method, target, named, b"", 0))

    assert route(b"/v1/services/api/instances/1/heartbeat") is not None
    assert route(b"/v1/services/api/instances/1/status") is not None
    assert route(b"/v1/services/api/instances/1/heartbeat", b"POST") is None
    assert route(b"/v1/services/api/instances/1/heartbeat?x=1") is None
    assert route(b"/v1/services/a%41/instances/1/heartbeat") is None
    assert route(b"/v1/services/api/instances/1") is None
    assert route(b"/v1/services/api/instances/1/status", connection=b"close") is None
    assert route(b"/v1/discover", b"POST") is not None
    assert route(b"/v1/instances", b"POST") is not None
    assert route(b"/v1/instances/", b"POST") is None
    assert route(b"/v1/discover", b"PUT") is None
    assert route(b"/v1/discover", b"POST", **{"content-type": b"text/plain"}) is None
