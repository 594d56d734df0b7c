"""What one request may cost the server: its token budget, its deadline, and nothing once its
client has gone.

A real uvicorn server on 127.0.0.1 runs the app on a fake engine whose score calls are
recorded and, until the test releases them, blocked: each batch the worker runs is one
call, so "the worker was freed within one batch" reads off the list of calls.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from serve_helpers import ServerThread, wait_for, wait_ready

from reranktune.params import DEFAULT_PROMPT_TEMPLATE
from reranktune.serve.app import ServeSettings, create_app


class SlowEngine:
    """Scores 0 for every pair; each score call is recorded, then waits until ``release`` is set."""

    kind = "fake"
    prompt_template = DEFAULT_PROMPT_TEMPLATE
    max_length = 512

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.encoded = 0
        self.calls: list[int] = []
        self.scored: list[list[str]] = []  # per score call, the first letters of its passages
        self.started = threading.Event()
        self.release = threading.Event()

    def tokens(self, query: str, passages: list[str]) -> int:
        texts = [self.prompt_template.format(query=query, passage=p) for p in passages]
        return sum(
            len(ids)
            for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)[
                "input_ids"
            ]
        )

    def encode(self, query: str, passages: list[str], truncate: bool) -> list[dict]:
        self.encoded += len(passages)
        return [{"input_ids": [1] * (3 + len(p) % 5), "prior": 0.0, "text": p} for p in passages]

    def score(self, pairs: list[dict]) -> list[float]:
        self.calls.append(len(pairs))
        self.scored.append(sorted({pair["text"][0] for pair in pairs}))
        self.started.set()
        self.release.wait(30)
        return [0.0] * len(pairs)


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def serve(engine: SlowEngine, **limits) -> tuple[ServerThread, object]:
    settings = ServeSettings(
        model_dir="unused", model_name="tiny", max_batch=4, max_wait_ms=0, **limits
    )
    app = create_app(settings, loader=lambda: engine)
    return ServerThread(app), app


def body(passages: list[str]) -> dict:
    return {
        "model": "tiny",
        "query": {"text": "how does vacuum reclaim storage"},
        "truncate": "END",
        "passages": [{"text": p} for p in passages],
    }


def test_a_request_over_the_token_budget_is_refused_before_any_model_work(tokenizer):
    engine = SlowEngine(tokenizer)
    engine.release.set()
    server, _ = serve(engine)  # the default budget, 65,536 tokens
    with server as srv:
        wait_ready(srv.url)
        # issue #22's request: 1,000 passages of 8 KB under truncate END, 2 minutes of work on a CPU
        large = body([("vacuum reclaims storage occupied by dead tuples " * 200)[:8000]] * 1000)
        start = time.monotonic()
        response = httpx.post(f"{srv.url}/v1/ranking", json=large, timeout=60)
        elapsed = time.monotonic() - start
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == "application/json"
        detail = response.json()["detail"]
        # counting stops with the slice of 4 passages that goes over: 132 x 512 tokens,
        # not all 512,000
        assert "67584 tokens in the first 132 of this request's 1000 passages" in detail, detail
        assert "65536" in detail and "max_tokens_per_request" in detail
        assert engine.encoded == 0 and engine.calls == []
        assert elapsed < 10, f"refusing took {elapsed:.1f} s"

        small = httpx.post(
            f"{srv.url}/v1/ranking", json=body(["a passage", "another one"]), timeout=30
        )
        assert small.status_code == 200 and engine.calls == [2]


def test_a_client_that_disconnects_frees_the_worker_within_one_batch(tokenizer):
    engine = SlowEngine(tokenizer)
    server, app = serve(engine, request_timeout_s=60, batching=True)
    with server as srv:
        wait_ready(srv.url)
        batcher = app.state.serve.batcher
        payload = json.dumps(body([f"passage {i}" for i in range(40)])).encode()  # 10 batches of 4
        with socket.create_connection(("127.0.0.1", srv.port)) as client:
            client.sendall(
                b"POST /v1/ranking HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            assert engine.started.wait(30)  # the first batch is on the model
            assert batcher.queued == 36
        wait_for(
            lambda: batcher.queued == 0, 10, "the server did not notice that the client went away"
        )
        engine.release.set()
        after = httpx.post(f"{srv.url}/v1/ranking", json=body(["next request"]), timeout=30)
        assert after.status_code == 200
        assert engine.calls == [
            4,
            1,
        ]  # the batch in flight, then the next request: none of the other 36
        assert batcher.dropped == 1


@pytest.mark.parametrize("batching", [True, False])
def test_a_request_past_its_deadline_gets_503_and_its_other_batches_are_dropped(
    tokenizer, batching
):
    engine = SlowEngine(tokenizer)
    server, _ = serve(engine, request_timeout_s=0.5, batching=batching)
    with server as srv:
        wait_ready(srv.url)
        start = time.monotonic()
        response = httpx.post(
            f"{srv.url}/v1/ranking", json=body([f"p{i}" for i in range(8)]), timeout=30
        )
        elapsed = time.monotonic() - start
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/json"
        assert "request_timeout_s" in response.json()["detail"]
        assert 0.5 <= elapsed < 10
        engine.release.set()
        after = httpx.post(f"{srv.url}/v1/ranking", json=body(["next request"]), timeout=30)
        assert after.status_code == 200
        time.sleep(0.2)  # room for a wrongly continued request to start its second batch
        assert engine.calls == [4, 1]


def test_without_batching_requests_take_the_model_in_arrival_order(tokenizer):
    """Under load the first request finishes first, instead of every request sharing the cores
    and finishing late together."""
    engine = SlowEngine(tokenizer)
    server, _ = serve(engine, request_timeout_s=30)
    with server as srv:
        wait_ready(srv.url)
        answers: dict[str, int] = {}

        def post(letter: str, n: int) -> None:
            passages = [f"{letter}{i}" for i in range(n)]
            response = httpx.post(f"{srv.url}/v1/ranking", json=body(passages), timeout=30)
            answers[letter] = response.status_code

        first = threading.Thread(target=post, args=("a", 8))  # two batches of 4
        first.start()
        assert engine.started.wait(30)  # its first batch is on the model
        second = threading.Thread(target=post, args=("b", 4))
        second.start()
        time.sleep(0.5)  # room for the second request to reach the model, were it let through
        assert engine.scored == [["a"]]
        engine.release.set()
        first.join(30)
        second.join(30)
        assert answers == {"a": 200, "b": 200}
        assert engine.scored == [["a"], ["a"], ["b"]]


def test_docs_are_off_unless_asked(tokenizer):
    engine = SlowEngine(tokenizer)
    for docs, status in ((False, 404), (True, 200)):
        server, _ = serve(engine, docs=docs)
        with server as srv:
            assert httpx.get(f"{srv.url}/docs").status_code == status
            assert httpx.get(f"{srv.url}/redoc").status_code == status
            assert httpx.get(f"{srv.url}/openapi.json").status_code == 200


def test_a_5_mb_query_is_cut_or_refused_before_anything_tokenizes_it(tiny_bert_dir):
    """A 5 MB query (under the 8 MiB body limit) costs a fraction of a second: cut under END, 400
    under NONE."""
    settings = ServeSettings(
        engine="torch", model_dir=str(tiny_bert_dir), model_name="tiny", max_batch=4
    )
    words = "vacuum reclaims storage occupied by dead tuples "
    huge = (words * (5_000_000 // len(words) + 1))[:5_000_000]

    def post(srv, query: str, truncate: str) -> tuple[httpx.Response, float]:
        content = json.dumps(
            {
                "model": "tiny",
                "query": {"text": query},
                "truncate": truncate,
                "passages": [{"text": "VACUUM frees space."}, {"text": "Lambdas are functions."}],
            }
        )
        start = time.perf_counter()
        response = httpx.post(
            f"{srv.url}/v1/ranking",
            content=content,
            timeout=60,
            headers={"content-type": "application/json"},
        )
        return response, time.perf_counter() - start

    with ServerThread(create_app(settings)) as srv:
        wait_ready(srv.url)
        assert (
            post(srv, "warm up", "END")[0].status_code == 200
        )  # the first forward pass sets up kernels
        refused, refused_s = post(srv, huge, "NONE")
        assert refused.status_code == 400, refused.text
        assert refused.json()["detail"].startswith("query: 5000000 characters")
        cut, cut_s = post(srv, huge, "END")
        assert cut.status_code == 200, cut.text
        assert max(refused_s, cut_s) < 0.5, f"NONE {refused_s:.2f} s, END {cut_s:.2f} s"
        # the query is cut to half the model's length in tokens anyway: the character cap changes
        # no score
        assert cut.json() == post(srv, huge[:20_000], "END")[0].json()


def _read_until_closed(client: socket.socket, timeout_s: float) -> bytes:
    client.settimeout(timeout_s)
    received = b""
    while chunk := client.recv(4096):
        received += chunk
    return received


@pytest.mark.parametrize(
    "sends", ["nothing", "headers slowly", "the body slowly", "a second request slowly"]
)
def test_a_slow_client_gets_408_and_is_disconnected_after_the_timeout(tokenizer, sends):
    engine = SlowEngine(tokenizer)
    engine.release.set()
    settings = ServeSettings(
        model_dir="unused", model_name="tiny", headers_timeout_s=1.0, body_timeout_s=1.5
    )
    payload = json.dumps(body(["a passage"])).encode()
    head = (
        b"POST /v1/ranking HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
    )
    trickle = {"the body slowly": payload, "nothing": b""}.get(sends, head)
    phase = "body" if sends == "the body slowly" else "headers"
    timeout = getattr(settings, f"{phase}_timeout_s")
    with ServerThread(
        create_app(settings, loader=lambda: engine), **settings.connection_limits()
    ) as srv:
        wait_ready(srv.url)
        with socket.create_connection(("127.0.0.1", srv.port)) as client:
            if phase == "body":
                client.sendall(head)
            elif (
                sends == "a second request slowly"
            ):  # kept alive after a first one, answered in full
                client.sendall(head + payload)
                first = b""
                while not first.endswith(b"]}"):  # the end of the JSON answer
                    first += client.recv(65536)
                assert first.startswith(b"HTTP/1.1 200 ")
            start = time.monotonic()
            for byte in trickle[:-1]:  # one byte every 0.1 s: it would take minutes to finish
                try:
                    client.send(bytes([byte]))
                except OSError:  # closed by the server
                    break
                time.sleep(0.1)
                if time.monotonic() - start > timeout + 2:
                    break
            received = _read_until_closed(client, 5)
            elapsed = time.monotonic() - start
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert f"{phase}_timeout_s".encode() in received
        assert timeout <= elapsed < timeout + 1, (
            f"closed after {elapsed:.2f} s, the timeout is {timeout} s"
        )
        fast = httpx.post(f"{srv.url}/v1/ranking", json=body(["a passage"]), timeout=30)
        assert fast.status_code == 200
