"""Generators: what turns chat messages into a completion.

Chosen by a spec string (`--generator`):

- `openai:URL#MODEL`: any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp server, TGI, ...). URL is
  the API base, e.g. `http://127.0.0.1:8000/v1`; `#MODEL` is optional (without it the first model listed by
  `GET URL/models` is used). A bearer token, if the server needs one, is read from the environment variable
  `CUMA_GENERATOR_API_KEY` (never from the spec, so it stays out of logs and output metadata). A bare
  `http://...` or `https://...` spec means `openai:`.
- `hf:PATH_OR_HUB_ID#key=value,...`: a local transformers causal LM, loaded lazily (torch and transformers
  are imported on first use only). Options: `device=cpu|cuda|cuda:1|auto` (default auto), `dtype=auto|
  float32|bfloat16|float16` (default auto), `trust_remote_code=1`. The tokenizer's chat template is used when
  it has one, a plain `System:/User:/Assistant:` rendering otherwise.
- `replay:DIR_OR_FILE`: returns saved completions (`*.txt`, sorted by name) in turn, cycling. A test double
  and an offline dry run of parsing/validation/dedup; it says so in its name.

Every generator has `name` (recorded in each output record), `describe()` (metadata, no secrets) and
`generate(messages, seed=None) -> Completion`. The HTTP backend has a timeout per request and retries with
exponential backoff and jitter on connection errors, timeouts, 408/409/425/429/5xx (honouring
`Retry-After`); when every attempt fails to connect it raises `GeneratorUnreachable` naming the URL.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .generator_types import (
    Completion,
    Generator,
    GeneratorError,
    GeneratorSpecError,
    GeneratorUnreachable,
    Messages,
    SamplingParams,
)

API_KEY_ENV = "CUMA_GENERATOR_API_KEY"
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

# ------------------------------------------------------------------------------------------ OpenAI-compatible

class OpenAIChatGenerator:
    """An OpenAI-compatible `/chat/completions` endpoint over stdlib `urllib` (no extra dependency)."""

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 params: SamplingParams = SamplingParams(), timeout: float = 300.0, retries: int = 3,
                 backoff: float = 1.0, max_backoff: float = 30.0, extra_body: Mapping[str, Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise GeneratorSpecError(f"endpoint URL must be http(s)://host[:port]/path, got {base_url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("need timeout > 0, retries >= 0, backoff >= 0")
        base = base_url.rstrip("/")
        for suffix in ("/chat/completions", "/completions"):
            if base.endswith(suffix):
                base = base[:-len(suffix)]
        self.base_url = base
        self.model = model or None
        self.api_key = api_key
        self.params = params
        self.timeout, self.retries = float(timeout), int(retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._jitter = random.Random()

    @property
    def name(self) -> str:
        return f"openai:{self.model or '?'}"

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "url": self.base_url, "model": self.model, "temperature": self.params.temperature,
                "top_p": self.params.top_p, "max_tokens": self.params.max_tokens}

    # -- HTTP with retries
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "cuma-curate"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return base * (0.5 + 0.5 * self._jitter.random())

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One JSON request with timeout and retries; returns the decoded JSON object."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        failures: list[str] = []
        connected = False
        for attempt in range(self.retries + 1):
            retry_after = None
            req = urllib.request.Request(url, data=data, method=method, headers=self._headers())
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read(MAX_RESPONSE_BYTES + 1)
                connected = True
                if len(raw) > MAX_RESPONSE_BYTES:
                    raise GeneratorError(f"{method} {url}: response larger than {MAX_RESPONSE_BYTES} bytes")
                try:
                    payload = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise GeneratorError(f"{method} {url}: response is not JSON: {raw[:200]!r}") from None
                if not isinstance(payload, dict):
                    raise GeneratorError(f"{method} {url}: expected a JSON object, got {type(payload).__name__}")
                return payload
            except urllib.error.HTTPError as exc:
                connected = True
                detail = _error_body(exc)
                if exc.code not in RETRYABLE_STATUS:
                    hint = ""
                    if exc.code == 404:
                        hint = " (is the URL the API base, ending in /v1, and is the model name served there?)"
                    elif exc.code in (401, 403):
                        hint = f" (set {API_KEY_ENV} if the server needs an API key)"
                    raise GeneratorError(
                        f"{method} {url} failed: HTTP {exc.code} {exc.reason}{hint}: {detail}") from None
                failures.append(f"HTTP {exc.code} {detail[:120]}")
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
            except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (TimeoutError, socket.timeout)) or isinstance(exc, TimeoutError):
                    failures.append(f"timed out after {self.timeout:g} s")
                else:
                    failures.append(f"{type(reason).__name__}: {reason}")
            if attempt < self.retries:
                self._sleep(self._delay(attempt, retry_after))
        attempts = self.retries + 1
        summary = "; ".join(dict.fromkeys(failures))
        if connected:
            raise GeneratorError(f"{method} {url} failed after {attempts} attempt(s): {summary}")
        raise GeneratorUnreachable(
            f"could not reach the OpenAI-compatible endpoint {self.base_url} ({method} {url}) after {attempts} "
            f"attempt(s): {summary}. Is the server running and reachable from here, and is the URL its API base "
            f"(e.g. http://127.0.0.1:8000/v1 for `vllm serve MODEL --port 8000`)? A slow server needs a larger "
            f"--timeout.")

    def resolve_model(self) -> str:
        """The model name: the one given, else the first listed by `GET /models`."""
        if self.model:
            return self.model
        listing = self.request("GET", "/models")
        models = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict) and m.get("id")]
        if not models:
            raise GeneratorError(f"{self.base_url}/models lists no model; name one: openai:{self.base_url}#MODEL")
        self.model = str(models[0])
        return self.model

    def generate(self, messages: Messages, *, seed: int | None = None) -> Completion:
        body: dict[str, Any] = {
            "model": self.resolve_model(),
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "temperature": self.params.temperature,
            "top_p": self.params.top_p,
            "max_tokens": self.params.max_tokens,
            "n": 1,
            "stream": False,
        }
        if seed is not None:
            body["seed"] = int(seed)
        body.update(self.extra_body)
        payload = self.request("POST", "/chat/completions", body)
        try:
            choice = payload["choices"][0]
            text = choice.get("message", {}).get("content")
            if text is None:
                text = choice.get("text", "")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise GeneratorError(f"unexpected response from {self.base_url}/chat/completions: "
                                 f"{json.dumps(payload)[:300]}") from None
        if not isinstance(text, str):
            raise GeneratorError(f"completion content is not text: {text!r:.200}")
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        return Completion(text, choice.get("finish_reason"), payload.get("model", self.model), usage)


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(2000).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the body is only a detail of the message
        return ""
    try:
        obj = json.loads(raw)
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            return str(obj["error"].get("message", raw))[:300]
    except json.JSONDecodeError:
        pass
    return " ".join(raw.split())[:300]


# ------------------------------------------------------------------------------------------ replay (test double)

class ReplayGenerator:
    """TEST DOUBLE / dry run: returns saved completions in turn (cycling); no model is called."""

    def __init__(self, source: str | os.PathLike[str] | Sequence[str]):
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
            if not files or not all(f.is_file() for f in files):
                raise GeneratorSpecError(f"replay: no completion files (*.txt) at {str(path)!r}")
            self.texts = [f.read_text(encoding="utf-8") for f in files]
            self.label = str(path)
        else:
            self.texts = [str(t) for t in source]
            self.label = "in-memory"
            if not self.texts:
                raise GeneratorSpecError("replay: no completions given")
        self.calls = 0
        self.received: list[list[dict[str, str]]] = []

    @property
    def name(self) -> str:
        return "replay"

    def describe(self) -> dict[str, Any]:
        return {"backend": "replay (test double: saved completions, no model)", "source": self.label}

    def generate(self, messages: Messages, *, seed: int | None = None) -> Completion:
        self.received.append([dict(m) for m in messages])
        text = self.texts[self.calls % len(self.texts)]
        self.calls += 1
        return Completion(text, "stop", "replay")


# ------------------------------------------------------------------------------------------ spec parsing

GENERATOR_SPEC_HELP = (
    "openai:URL[#MODEL] (an OpenAI-compatible chat endpoint, e.g. openai:http://127.0.0.1:8000/v1#Qwen2.5-72B-"
    f"Instruct; API key from ${API_KEY_ENV} if needed), hf:PATH_OR_HUB_ID[#device=cuda,dtype=bfloat16] (a local "
    "transformers model), or replay:DIR (saved completions, a test double)")


def make_generator(spec: str, *, params: SamplingParams = SamplingParams(), timeout: float = 300.0,
                   retries: int = 3, backoff: float = 1.0) -> Generator:
    """A generator from a spec string (see the module docstring and `GENERATOR_SPEC_HELP`)."""
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if kind in ("http", "https"):
        kind, rest, sep = "openai", spec, ":"
    if not sep or not rest:
        raise GeneratorSpecError(f"generator spec {spec!r} not understood; use {GENERATOR_SPEC_HELP}")
    if kind == "openai":
        url, _, model = rest.partition("#")
        return OpenAIChatGenerator(url, model or None, api_key=os.environ.get(API_KEY_ENV) or None, params=params,
                                   timeout=timeout, retries=retries, backoff=backoff)
    if kind in ("hf", "transformers"):
        from .hf_backend import TransformersGenerator  # torch is imported only when the model is loaded

        model_id, _, opts = rest.partition("#")
        if model_id.startswith(("/", ".", "~")) and not Path(model_id).expanduser().exists():
            raise GeneratorSpecError(f"hf model folder {model_id} does not exist (a hub id looks like ORG/NAME)")
        options: dict[str, str] = {}
        for item in filter(None, (o.strip() for o in opts.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key not in ("device", "dtype", "trust_remote_code"):
                raise GeneratorSpecError(f"hf option {item!r} not understood; options: device=, dtype=, "
                                         "trust_remote_code=")
            options[key] = value
        return TransformersGenerator(model_id, params=params, device=options.get("device", "auto"),
                                     dtype=options.get("dtype", "auto"),
                                     trust_remote_code=options.get("trust_remote_code", "0").lower() in ("1", "true",
                                                                                                          "yes"))
    if kind == "replay":
        return ReplayGenerator(rest)
    raise GeneratorSpecError(f"unknown generator kind {kind!r} in {spec!r}; use {GENERATOR_SPEC_HELP}")
