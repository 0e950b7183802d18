"""The playground's server over HTTP and WebSocket: pages, sessions, limits, bad messages.

Needs the ``web`` extra and httpx (Starlette's test client); skips without them.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("starlette")
try:  # Starlette's test client runs on httpx2 (httpx before Starlette 1.0)
    import httpx2  # noqa: F401
except ImportError:
    pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from deltaflow.web import server  # noqa: E402

IDS = (
    "dataset",
    "layers",
    "train",
    "step",
    "reset",
    "loss",
    "test-loss",
    "epoch",
    "boundary",
    "dp",
)


@pytest.fixture
def client():
    with TestClient(server.create_app()) as c:
        yield c


def _until(ws, kind, limit=50):
    """Messages up to and including the first of type ``kind``."""
    seen = []
    for _ in range(limit):
        msg = ws.receive_json()
        seen.append(msg)
        if msg["type"] == kind:
            return seen
    raise AssertionError(f"no {kind!r} message in {limit}: {[m['type'] for m in seen]}")


def _open(ws):
    first, second = ws.receive_json(), ws.receive_json()
    assert (first["type"], second["type"]) == ("network", "update")
    return first, second


def test_the_page_and_its_files_are_served_with_the_stable_ids(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in IDS:
        assert f'id="{name}"' in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.text) > 1000
    assert client.get("/static/missing.js").status_code == 404
    assert client.get("/nothing").status_code == 404
    # every file the page loads is local: no CDN
    script = client.get("/static/app.js").text
    assert "https://" not in page.text and "https://" not in script
    # the page draws; the engine computes: no activation, cost or derivative in the script
    for maths in ("Math.exp", "Math.tanh", "Math.log(", "sigmoid(", "softmax("):
        assert maths not in script


def test_a_session_configures_steps_and_traces(client):
    with client.websocket_connect("/ws") as ws:
        network, update = _open(ws)
        assert network["sizes"] == [2, 4, 2, 1] and update["epoch"] == 0
        ws.send_text(
            json.dumps({"type": "configure", "settings": {"hidden": [3], "dataset": "xor"}})
        )
        network, update = _until(ws, "network")[-1], ws.receive_json()
        assert network["sizes"] == [2, 3, 1] and network["settings"]["dataset"] == "xor"
        assert update["type"] == "update"
        ws.send_text(json.dumps({"type": "step"}))
        trace, update = ws.receive_json(), ws.receive_json()
        assert trace["type"] == "trace" and update["steps"] == 1
        assert [len(lay["delta"]) for lay in trace["trace"]["layers"]] == [3, 1]
        ws.send_text(json.dumps({"type": "trace", "row": 5}))
        assert ws.receive_json()["row"] == 5


def test_play_streams_updates_about_twenty_a_second_until_paused(client):
    with client.websocket_connect("/ws") as ws:
        _, first = _open(ws)
        ws.send_text(json.dumps({"type": "play"}))
        start = time.monotonic()
        updates = [ws.receive_json() for _ in range(10)]
        elapsed = time.monotonic() - start
        assert [u["type"] for u in updates] == ["update"] * 10
        assert [u["epoch"] for u in updates] == list(range(1, 11))
        assert elapsed >= 9 / server.FRAMES_PER_SECOND * 0.9
        assert updates[-1]["loss"] < first["loss"]
        ws.send_text(json.dumps({"type": "pause"}))
        seen = _until(ws, "trace")
        final = _until(ws, "update")[-1]
        assert final["playing"] is False
        assert all(m["type"] == "update" for m in seen[:-1])


@pytest.mark.parametrize(
    "raw, words",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "type is one of"),
        ('{"type": "explode"}', "type is one of"),
        ('{"type": "configure", "settings": {"hidden": [50]}}', "from 1 to 8"),
        ('{"type": "configure", "settings": {"learning_rate": 1e400}}', "learning_rate"),
        ('{"type": "configure", "settings": null}', "object"),
        ('{"type": "trace", "row": 1e9}', "row"),
        ('{"type": "trace", "row": "0; drop"}', "row"),
        ("[" * 5000, "longer than 4096 bytes"),
        ("[" * 3000 + "]" * 3000, "longer than 4096 bytes"),
        ("[" * 2000 + "]" * 2000, "not valid JSON"),
        ("[" * 500 + "]" * 500, "type is one of"),
    ],
)
def test_a_bad_message_gets_an_error_and_the_session_goes_on(client, raw, words):
    with client.websocket_connect("/ws") as ws:
        _open(ws)
        ws.send_text(raw)
        msg = ws.receive_json()
        assert msg["type"] == "error" and words in msg["message"]
        ws.send_text(json.dumps({"type": "step"}))
        assert ws.receive_json()["type"] == "trace"


def test_binary_messages_are_refused(client):
    with client.websocket_connect("/ws") as ws:
        _open(ws)
        ws.send_bytes(b"\x00\x01")
        msg = ws.receive_json()
        assert msg == {"type": "error", "message": "messages must be JSON text, not binary"}


def test_sessions_are_separate_and_end_with_their_socket(client):
    with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as two:
        _open(one)
        _open(two)
        assert client.get("/health").text == "sessions 2\n"
        one.send_text(json.dumps({"type": "configure", "settings": {"hidden": [1]}}))
        assert _until(one, "network")[-1]["sizes"] == [2, 1, 1]
        two.send_text(json.dumps({"type": "trace"}))
        assert [len(lay["delta"]) for lay in two.receive_json()["trace"]["layers"]] == [4, 2, 1]
    for _ in range(100):
        if client.get("/health").text == "sessions 0\n":
            break
        time.sleep(0.02)
    assert client.get("/health").text == "sessions 0\n"


def test_a_tab_beyond_the_limit_is_told_and_closed():
    with TestClient(server.create_app(max_sessions=1)) as client:
        with client.websocket_connect("/ws") as first:
            _open(first)
            with client.websocket_connect("/ws") as extra:
                msg = extra.receive_json()
                assert msg["type"] == "error" and "1 tabs at most" in msg["message"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    extra.receive_json()
                assert closed.value.code == 1013
            first.send_text(json.dumps({"type": "trace"}))
            assert first.receive_json()["type"] == "trace"


def test_too_many_messages_are_refused_then_the_page_is_disconnected(client, monkeypatch):
    monkeypatch.setattr(server, "BURST", 3)
    monkeypatch.setattr(server, "RATE", 0.01)
    monkeypatch.setattr(server, "MAX_REFUSED", 4)
    with client.websocket_connect("/ws") as ws:
        _open(ws)
        for _ in range(3):
            ws.send_text(json.dumps({"type": "play"}))
        for _ in range(4):
            ws.send_text(json.dumps({"type": "pause"}))
        seen = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                seen.append(ws.receive_json())
        assert closed.value.code == 1008
        errors = [m["message"] for m in seen if m["type"] == "error"]
        refused = "too many messages: at most 0.01 a second (a step or trace counts 4)"
        assert errors[:3] == [refused] * 3
        assert errors[-1] == "too many messages; disconnected"


def test_a_page_from_another_site_is_refused(client):
    with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
        assert ws.receive_json() == {
            "type": "error",
            "message": "connections from other sites are refused",
        }
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "network"


@pytest.mark.parametrize(
    "origin, host, ok",
    [
        (None, "127.0.0.1:8765", True),
        ("http://127.0.0.1:8765", "127.0.0.1:8765", True),
        ("http://LOCALHOST:8765", "localhost:8765", True),
        ("http://127.0.0.1:8766", "127.0.0.1:8765", False),
        ("https://example.com", "127.0.0.1:8765", False),
        ("null", "127.0.0.1:8765", False),
        ("http://127.0.0.1:8765", None, False),
    ],
)
def test_same_origin(origin, host, ok):
    assert server.same_origin(origin, host) is ok


def test_a_trace_costs_more_of_the_rate_than_a_play(client, monkeypatch):
    monkeypatch.setattr(server, "BURST", 5)
    monkeypatch.setattr(server, "RATE", 0.01)
    with client.websocket_connect("/ws") as ws:
        _open(ws)
        ws.send_text(json.dumps({"type": "trace"}))  # 4 of the 5
        assert ws.receive_json()["type"] == "trace"
        ws.send_text(json.dumps({"type": "trace"}))
        assert ws.receive_json()["message"].startswith("too many messages")
        ws.send_text(json.dumps({"type": "explode"}))  # 1: refused for what it says
        assert "type is one of" in ws.receive_json()["message"]
