"""A scripted OpenAI-compatible server on 127.0.0.1 for the LLM generator's tests.

Replies are a pure function of the prompt (so a resumed run equals an uninterrupted one);
faults are scripted per step (``server.script.append(("qa", "429"))``) and consumed once.
Every request is logged in ``server.calls`` with its step and the documents it names.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CHUNK = re.compile(r"^\[chunk (\d+)\] (.*)$", re.MULTILINE)
_DOC = re.compile(r'<document name="([^"]+)">')
_WORD = re.compile(r"[a-z]{4,}")
STEPS = {
    "artifact extraction step": "artifacts",
    "question generation step": "qa",
    "quality judge step": "judge",
}


def _text(content) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content or ""


def _words(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for w in _WORD.findall(text.lower()):
        seen.setdefault(w, None)
    return list(seen)


def embedding(text: str, dims: int = 64) -> list[float]:
    vec = [0.0] * dims
    for w in _WORD.findall(text.lower()):
        vec[int(hashlib.md5(w.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def qa_reply(user: str) -> dict:
    chunks = [(int(cid), text) for cid, text in _CHUNK.findall(user)]
    counts = dict(
        (k, int(n))
        for n, k in re.findall(r"(\d+) (multi_hop|structural|contextual)", user.split("\n")[0])
    )
    kinds = [k for k, n in counts.items() for _ in range(n)]
    pairs = []
    for i, kind in enumerate(kinds):
        a = chunks[i % len(chunks)]
        b = chunks[(i + 1) % len(chunks)]
        cited = sorted({a[0], b[0]}) if kind == "multi_hop" else [a[0]]
        words = _words(a[1])[(i // len(chunks)) * 3 :][:3] + (
            _words(b[1])[:2] if kind == "multi_hop" else []
        )
        question = f"how does {' '.join(words) or 'it'} work in case {i}"
        pairs.append(
            {
                "question": question,
                "answer": a[1][:120],
                "query_type": kind,
                "reasoning_type": ["factual", "relational", "causal"][i % 3],
                "question_complexity": 1 + i % 5,
                "segment_ids": cited,
                "hop_count": len(cited),
                "hop_contexts": [
                    {"hop_number": h + 1, "segment_ids": [c], "summary": f"chunk {c}"}
                    for h, c in enumerate(cited)
                ],
            }
        )
    if pairs:  # a near-duplicate of the first question, for the dedup step
        pairs.append({**pairs[0], "question": pairs[0]["question"] + " exactly"})
    return {"pairs": pairs}


def judge_reply(user: str) -> dict:
    listed = json.loads(
        user.split("\nPairs:\n", 1)[1].split("\n\nReturn only one JSON object", 1)[0]
    )
    evaluations = []
    for pair in listed:
        score = 5.0 if pair["index"] % 4 == 3 else 9.0
        crit = {"score": score, "justification": "scripted"}
        evaluations.append(
            {
                "index": pair["index"],
                "relevance": crit,
                "accuracy": crit,
                "context_support": crit,
                "clarity": crit,
                "overall": {"score": score, "assessment": "scripted judge"},
            }
        )
    return {"evaluations": evaluations}


def artifacts_reply(user: str) -> dict:
    words = _words(" ".join(text for _, text in _CHUNK.findall(user)))
    return {
        "key_concepts": [{"text": w, "description": "scripted"} for w in words[:3]],
        "entities": [{"text": w} for w in words[3:5]],
    }


class FakeLLM:
    def __init__(
        self, expected_key: str | None = None, delay: float = 0.0, timeout_sleep: float = 1.0
    ) -> None:
        self.expected_key = expected_key
        self.delay = delay
        self.timeout_sleep = timeout_sleep
        self.script: list[tuple[str, str]] = []
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _fault(self, step: str) -> str | None:
        with self.lock:
            for i, (wanted, action) in enumerate(self.script):
                if wanted == step:
                    del self.script[i]
                    return action
        return None

    def steps(self, step: str) -> list[dict]:
        return [c for c in self.calls if c["step"] == step]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                if self.path.endswith("/embeddings"):
                    step, user = "embeddings", ""
                else:
                    messages = body["messages"]
                    system = (
                        _text(messages[0]["content"]) if messages[0]["role"] == "system" else ""
                    )
                    user = _text(messages[-1]["content"])
                    step = next((s for marker, s in STEPS.items() if marker in system), "preflight")
                call = {
                    "step": step,
                    "docs": _DOC.findall(user),
                    "model": body.get("model"),
                    "user": user,
                    "messages": [
                        {"role": m["role"], "content": _text(m["content"])}
                        for m in body.get("messages", [])
                    ],
                }
                with server.lock:
                    server.calls.append(call)
                if server.expected_key and auth != f"Bearer {server.expected_key}":
                    # echo what was sent, as some real servers do: the client must redact it
                    return self._send(401, {"error": f"invalid credentials: {auth}"})
                if server.delay:
                    time.sleep(server.delay)
                fault = server._fault(step)
                if fault == "429":
                    return self._send(429, {"error": "rate limited"}, {"Retry-After": "0"})
                if fault == "500":
                    return self._send(500, {"error": "internal"})
                if fault == "timeout":
                    time.sleep(server.timeout_sleep)
                if step == "embeddings":
                    data = [
                        {"index": i, "embedding": embedding(t)} for i, t in enumerate(body["input"])
                    ]
                    return self._send(200, {"object": "list", "data": data})
                reply = {"artifacts": artifacts_reply, "qa": qa_reply, "judge": judge_reply}.get(
                    step
                )
                obj = reply(user) if reply else None
                content = (
                    "OK"
                    if obj is None
                    else f"<think>scripted</think>\n```json\n{json.dumps(obj)}\n```"
                )
                if fault == "broken_json":
                    content = '```json\n{"pairs": [{"question": "unterminated\n```'
                if fault == "bad_schema":
                    content = '```json\n{"pairs": [{"question": "no answer or types"}]}\n```'
                self._send(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(user) // 4,
                            "completion_tokens": len(content) // 4,
                        },
                    },
                )

        return Handler
