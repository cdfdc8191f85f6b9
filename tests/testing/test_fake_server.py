"""The shared fake-vendor harness: the same answers in-process and over loopback HTTP."""

from __future__ import annotations

import json
import socket

import httpx

from incsync.testing.fakes import FakeVendor


class Echo(FakeVendor):
    """Answers every request with what it received."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.url.params),
                "body": request.content.decode(),
            },
            headers={"X-Fake": "yes"},
        )


def test_a_fake_answers_the_same_through_a_transport_and_over_http() -> None:
    """MockTransport and a real loopback server give the same status, headers and body."""
    fake = Echo()
    with httpx.Client(transport=fake.transport(), base_url="http://fake") as client:
        in_process = client.post("/v1/things?since=2", content=b"hello")
    with fake.serve() as base_url, httpx.Client(base_url=base_url) as client:
        assert base_url.startswith("http://127.0.0.1:")
        over_http = client.post("/v1/things?since=2", content=b"hello")
    for response in (in_process, over_http):
        assert response.status_code == 200
        assert response.headers["X-Fake"] == "yes"
        assert response.json() == {
            "method": "POST",
            "path": "/v1/things",
            "query": {"since": "2"},
            "body": "hello",
        }


def test_faults_answer_first_and_requests_are_recorded_without_credentials() -> None:
    """A fault may answer in the fake's place; the log masks the Authorization header."""
    fake = Echo()
    remaining = [2]

    def outage(request: httpx.Request) -> httpx.Response | None:
        if remaining[0] == 0:
            return None
        remaining[0] -= 1
        return httpx.Response(503, text="down")

    fake.add_fault(outage)
    with fake.serve() as base_url, httpx.Client(base_url=base_url) as client:
        statuses = [
            client.get("/x", headers={"Authorization": "Bearer sk_SENTINEL"}).status_code
            for _ in range(3)
        ]
    assert statuses == [503, 503, 200]
    assert [r.status for r in fake.requests] == [503, 503, 200]
    assert all(r.headers["authorization"] == "***" for r in fake.requests)
    assert "SENTINEL" not in json.dumps([r.headers for r in fake.requests])


def test_a_served_fake_sees_the_address_it_was_asked_at_and_listens_where_told() -> None:
    """A request's URL carries the Host the client sent (as answers that name the server must),
    unless that Host is no address, when the served one stands in; the port asked for is used."""
    fake = Echo()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with fake.serve(port=port) as base_url, httpx.Client(base_url=base_url) as client:
        assert base_url == f"http://127.0.0.1:{port}"
        client.get("/a", headers={"Host": f"localhost:{port}"})
        client.get("/b", headers={"Host": "evil.example/x?y"})
    assert [request.url for request in fake.requests] == [
        f"http://localhost:{port}/a",
        f"http://127.0.0.1:{port}/b",
    ]
