"""The `openai` rollout engine: any OpenAI-compatible server (`vllm serve`, SGLang, a fleet behind a proxy).

Each sample is one request with `n = 1`: the chat API reports only the total completion tokens of a request,
and one request per sample gives exact per-sample token counts (servers with prefix caching pay the prompt
once anyway). Requests run on a bounded thread pool (`concurrency`), and transient failures (connection
errors, timeouts, 429, 5xx) are retried with exponential backoff and jitter, honouring Retry-After. Other
4xx answers, or a server that stays unreachable, raise RolloutError with the server's own message.

`endpoint="chat"` lets the server apply its chat template; `endpoint="completions"` renders the prompt
locally with the model's tokenizer (for servers started without a template).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from curriculum.rollout.base import Completion, Messages, RolloutError, Sampling

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEngine:
    """Rollouts from an OpenAI-compatible `/v1/chat/completions` or `/v1/completions` endpoint."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        endpoint: Literal["chat", "completions"] = "chat",
        concurrency: int = 32,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        send_seed: bool = False,
        tokenizer: str | None = None,
    ) -> None:
        import httpx

        if endpoint not in ("chat", "completions"):
            raise RolloutError(f"unknown endpoint {endpoint!r}; expected chat or completions")
        if int(concurrency) < 1:
            raise RolloutError(f"concurrency must be at least 1, got {concurrency}")
        self.base_url = _normalize_base_url(base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
        self.endpoint = endpoint
        self.concurrency = int(concurrency)
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)
        self.send_seed = bool(send_seed)
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(float(timeout_s), connect=float(connect_timeout_s)),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        self._jitter = random.Random()
        self._lock = threading.Lock()
        self._model_spec = model
        self._counter = None
        try:
            self.model = self._served_model(model)
            self._tokenizer = self._load_tokenizer(tokenizer or model) if endpoint == "completions" else None
        except BaseException:
            self.client.close()
            raise

    # -- protocol ------------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Messages], n: int, sampling: Sampling) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not prompts:
            return []
        rendered = [self._render(messages) for messages in prompts]
        jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
        results: list[list[Completion | None]] = [[None] * n for _ in prompts]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            futures = {
                pool.submit(self._sample, rendered[i], sampling, sampling.seed + i * n + j): (i, j) for i, j in jobs
            }
            try:
                for future, (i, j) in futures.items():
                    results[i][j] = future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.client.close()

    # -- requests ------------------------------------------------------------------------------------------

    def _render(self, messages: Messages):
        if self._tokenizer is None:
            return list(messages)
        return self._tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

    def _sample(self, prompt, sampling: Sampling, seed: int) -> Completion:
        body = {
            "model": self.model,
            "n": 1,
            "max_tokens": sampling.max_tokens,
            "temperature": max(0.0, sampling.temperature),
            "top_p": sampling.top_p if sampling.temperature > 0 else 1.0,
        }
        if self.send_seed:
            body["seed"] = seed
        if self.endpoint == "chat":
            body["messages"] = prompt
            data = self._request("POST", "/chat/completions", json=body)
        else:
            body["prompt"] = prompt
            data = self._request("POST", "/completions", json=body)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
            reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError) as error:
            raise RolloutError(f"unexpected response from {self.base_url}: {str(data)[:200]}") from error
        text = text or ""
        if reason not in ("stop", "length"):
            raise RolloutError(f"server at {self.base_url} ended a completion with finish_reason={reason!r}")
        usage = data.get("usage") or {}
        tokens = usage.get("completion_tokens")
        if tokens is None:
            tokens = len(self._count_tokenizer().encode(text, add_special_tokens=False))
        return Completion(text=text, num_tokens=int(tokens), finish_reason=reason)

    def _request(self, method: str, path: str, *, json: dict | None = None, max_retries: int | None = None):
        import httpx

        retries = self.max_retries if max_retries is None else max_retries
        last = "no attempt made"
        for attempt in range(retries + 1):
            wait = None
            try:
                response = self.client.request(method, path, json=json)
            except httpx.TransportError as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        last = f"HTTP {response.status_code} with a body that is not JSON"
                else:
                    message = _error_message(response)
                    if response.status_code not in _RETRY_STATUS:
                        raise RolloutError(
                            f"server at {self.base_url} refused {method} {path}: HTTP {response.status_code} {message}"
                        )
                    last = f"HTTP {response.status_code} {message}"
                    wait = _retry_after(response)
            if attempt < retries:
                delay = self.backoff_s * (2**attempt)
                with self._lock:
                    delay *= 0.5 + self._jitter.random()
                time.sleep(min(60.0, wait if wait is not None else delay))
        raise RolloutError(
            f"cannot reach an OpenAI-compatible server at {self.base_url} ({method} {path} failed "
            f"{retries + 1} time(s); last error: {last})"
        )

    def _served_model(self, requested: str) -> str:
        """The name the server knows the model by: `requested`, its hub id, or the only model served."""
        data = self._request("GET", "/models", max_retries=min(self.max_retries, 2))
        served = [entry.get("id") for entry in (data.get("data") or []) if isinstance(entry, dict)]
        if requested in served:
            return requested
        try:
            from curriculum.models import model_label

            label = model_label(requested)
        except Exception:  # noqa: BLE001 - a label is only a convenience here
            label = requested
        if label in served:
            return label
        if len(served) == 1:
            return served[0]
        raise RolloutError(
            f"server at {self.base_url} does not serve model {requested!r}; it serves: {', '.join(served) or 'none'}"
        )

    def _load_tokenizer(self, spec: str):
        from transformers import AutoTokenizer

        from curriculum.models import resolve_model

        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec))
        except Exception as error:  # noqa: BLE001
            raise RolloutError(
                f"endpoint=completions renders prompts locally and needs the tokenizer of {spec!r}: {error}"
            ) from error
        if not getattr(tokenizer, "chat_template", None):
            raise RolloutError(f"tokenizer of {spec!r} has no chat template to render prompts with")
        return tokenizer

    def _count_tokenizer(self):
        """A tokenizer to count tokens with, for servers that report no usage (loaded once, on demand)."""
        if self._tokenizer is not None:
            return self._tokenizer
        with self._lock:
            if self._counter is None:
                self._counter = self._load_tokenizer(self._model_spec)
        return self._counter


def _normalize_base_url(url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1` both mean the server's /v1 API; other paths are kept."""
    from urllib.parse import urlsplit

    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise RolloutError(f"base_url must start with http:// or https://, got {url!r}")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


def _error_message(response) -> str:
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        return str(message)[:300]
    except ValueError:
        return response.text[:300]


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
