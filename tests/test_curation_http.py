"""The OpenAI-compatible HTTP backend against a local test server, and `cuma curate` killed mid-run.

The server is a TEST DOUBLE of a vLLM-style endpoint: stdlib `ThreadingHTTPServer` bound to 127.0.0.1 on a
free port, request bodies bounded (1 MB), a bounded number of requests, and a watchdog that shuts it down by
itself after two minutes even if a test forgets to. Its completions are scripted (fixtures, GSM8K *train*
questions, deliberate errors and delays); no model runs.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from curricula.curation.backends import (
    API_KEY_ENV,
    GeneratorError,
    GeneratorUnreachable,
    OpenAIChatGenerator,
    SamplingParams,
    make_generator,
)
from curricula.curation.dedup import build_eval_index
from curricula.curation.parsing import format_problems
from curricula.curation.pipeline import build_pool_index

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "curation"
MAX_BODY = 1 << 20
MESSAGES = [{"role": "system", "content": "You write problems."}, {"role": "user", "content": "Write 2."}]


class FakeEndpoint:
    """TEST DOUBLE of an OpenAI-compatible server (see the module docstring)."""

    def __init__(self, completer=None, *, max_requests: int = 500, lifetime_s: float = 120.0, delay_s: float = 0.0):
        self.requests: list[dict] = []
        self.script: deque = deque()  # one-shot behaviours, consumed first
        self.completer = completer or (lambda body, n: "<problem>\nWhat is $2+2$?\n</problem>\n<answer>4</answer>")
        self.max_requests, self.delay_s = max_requests, delay_s
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a handler thread forever

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                endpoint._handle(self, None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    # read the body first, as real servers do: a reply on an unread body closes the socket
                    # while the client is still sending, and the client then sees a broken pipe (a race)
                    remaining = min(length, 4 * MAX_BODY)
                    while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                        remaining -= len(chunk)
                    self.send_error(413, "request body too large")
                    return
                endpoint._handle(self, self.rfile.read(length))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.watchdog = threading.Timer(lifetime_s, self.stop)
        self.watchdog.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> "FakeEndpoint":
        self.thread.start()
        self.watchdog.start()
        return self

    def stop(self) -> None:
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()

    def _send(self, handler, status: int, payload, headers=None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def _handle(self, handler, raw: bytes | None) -> None:
        with self.lock:
            n = len(self.requests)
            body = json.loads(raw) if raw else None
            self.requests.append({"method": handler.command, "path": handler.path, "body": body,
                                  "headers": dict(handler.headers)})
            step = self.script.popleft() if self.script else None
        if n >= self.max_requests:
            self._send(handler, 503, {"error": {"message": "test server request budget spent"}})
            return
        if step is not None:
            kind, *args = step
            if kind == "sleep":
                time.sleep(args[0])
            elif kind == "status":
                status, message, headers = (*args, None)[:3]
                self._send(handler, status, {"error": {"message": message}}, headers)
                return
            elif kind == "raw":
                self._send(handler, 200, args[0])
                return
        if self.delay_s:
            time.sleep(self.delay_s)
        if handler.path.endswith("/models"):
            self._send(handler, 200, {"object": "list", "data": [{"id": "served-model", "object": "model"}]})
        elif handler.path.endswith("/chat/completions"):
            text = self.completer(body, n)
            self._send(handler, 200, {
                "id": f"cmpl-{n}", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": len(text) // 4}})
        else:
            self._send(handler, 404, {"error": {"message": f"no route {handler.path}"}})


@pytest.fixture
def endpoint():
    server = FakeEndpoint().start()
    yield server
    server.stop()


def client(url, **kwargs):
    delays = []
    gen = OpenAIChatGenerator(url, kwargs.pop("model", "m"), sleep=delays.append, timeout=kwargs.pop("timeout", 5),
                              retries=kwargs.pop("retries", 3), **kwargs)
    return gen, delays


# ------------------------------------------------------------------------------------------------- backend

def test_chat_request_and_response(endpoint):
    gen, _ = client(endpoint.url, params=SamplingParams(temperature=0.7, top_p=0.9, max_tokens=321))
    out = gen.generate(MESSAGES, seed=42)
    assert out.text.startswith("<problem>") and out.finish_reason == "stop" and out.model == "m"
    req = endpoint.requests[-1]
    assert req["method"] == "POST" and req["path"] == "/v1/chat/completions"
    assert req["body"] == {"model": "m", "messages": MESSAGES, "temperature": 0.7, "top_p": 0.9, "max_tokens": 321,
                           "n": 1, "stream": False, "seed": 42}
    assert "Authorization" not in req["headers"]


def test_model_is_discovered_and_api_key_sent_from_the_environment(endpoint, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "sk-test-123")
    gen = make_generator(f"openai:{endpoint.url}")
    assert gen.generate(MESSAGES).text
    assert [r["path"] for r in endpoint.requests] == ["/v1/models", "/v1/chat/completions"]
    assert endpoint.requests[-1]["body"]["model"] == "served-model"
    assert endpoint.requests[-1]["headers"]["Authorization"] == "Bearer sk-test-123"
    assert "sk-test" not in json.dumps(gen.describe()) + gen.name  # never recorded in metadata
    bare = make_generator(f"{endpoint.url}/chat/completions")  # a bare URL means openai:, suffix tolerated
    assert bare.base_url == endpoint.url


def test_retries_with_backoff_then_success(endpoint):
    endpoint.script.extend([("status", 503, "loading"), ("status", 502, "bad gateway"),
                            ("status", 429, "slow down", {"Retry-After": "2"})])
    gen, delays = client(endpoint.url, retries=3, backoff=1.0)
    assert gen.generate(MESSAGES).text
    assert len(endpoint.requests) == 4
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0  # exponential with jitter
    assert delays[2] == 2.0  # Retry-After honoured


def test_retries_exhausted_is_a_generator_error(endpoint):
    endpoint.script.extend([("status", 500, "boom")] * 3)
    gen, delays = client(endpoint.url, retries=2)
    with pytest.raises(GeneratorError, match="after 3 attempt.*HTTP 500 boom") as info:
        gen.generate(MESSAGES)
    assert not isinstance(info.value, GeneratorUnreachable) and len(delays) == 2


@pytest.mark.parametrize("status, hint", [(400, "bad request body"), (404, "ending in /v1"), (401, API_KEY_ENV)])
def test_client_errors_are_not_retried(endpoint, status, hint):
    endpoint.script.append(("status", status, "bad request body"))
    gen, delays = client(endpoint.url)
    with pytest.raises(GeneratorError, match=f"HTTP {status}") as info:
        gen.generate(MESSAGES)
    assert hint in str(info.value) and len(endpoint.requests) == 1 and delays == []


def test_malformed_responses(endpoint):
    endpoint.script.append(("raw", b"<html>proxy error</html>"))
    gen, _ = client(endpoint.url)
    with pytest.raises(GeneratorError, match="not JSON"):
        gen.generate(MESSAGES)
    endpoint.script.append(("raw", json.dumps({"object": "chat.completion", "choices": []}).encode()))
    with pytest.raises(GeneratorError, match="unexpected response"):
        gen.generate(MESSAGES)


def test_timeout_then_unreachable(endpoint):
    endpoint.script.extend([("sleep", 1.5), ("sleep", 1.5)])
    gen, delays = client(endpoint.url, timeout=0.3, retries=1)
    start = time.monotonic()
    with pytest.raises(GeneratorUnreachable, match="timed out after 0.3 s.*--timeout"):
        gen.generate(MESSAGES)
    assert time.monotonic() - start < 1.5 and len(delays) == 1


def test_unreachable_endpoint_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gen, delays = client(f"http://127.0.0.1:{port}/v1", retries=2)
    with pytest.raises(GeneratorUnreachable) as info:
        gen.generate(MESSAGES)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/v1" in message and "after 3 attempt(s)" in message
    assert "Is the server running" in message and len(delays) == 2


def test_oversized_request_is_refused_by_the_test_server(endpoint):
    gen, _ = client(endpoint.url)
    with pytest.raises(GeneratorError, match="HTTP 413"):
        gen.generate([{"role": "user", "content": "x" * (MAX_BODY + 10)}])


def test_bad_specs():
    from curricula.curation.backends import GeneratorSpecError
    for spec in ("nothing", "openai:", "openai:ftp://host/v1", "grpc:host", "hf:model#colour=red"):
        with pytest.raises(GeneratorSpecError):
            make_generator(spec)


# ------------------------------------------------------------------------------------------------- cuma curate, killed


def _gsm8k_completer(data_dir: Path):
    """25 GSM8K *train* questions per request (new ones each time), plus a near copy of a MATH-500 problem."""
    records = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()]
    nearcopy = ("In a class of 50 students, 27 participate in MATHCOUNTS, 21 participate in science club, and 6 "
                "students participate in neither. How many students participate in both MATHCOUNTS and science club?")

    def complete(body, n):
        chunk = records[(n * 24) % len(records):(n * 24) % len(records) + 24]
        items = [(r["question"], r["answer"].split("####")[-1].strip()) for r in chunk]
        return "Here are the problems.\n\n" + format_problems(items[:12] + [(nearcopy, "4")] + items[12:])
    return complete


def _curate_cmd(url, out, data_dir, pool, calls):
    return [sys.executable, "-m", "agents.commands.curate", "--generator", f"openai:{url}#test-model",
            "--out", str(out), "--levels", "1,2", "--topics", "prealgebra", "--calls", str(calls),
            "--data-dir", str(data_dir), "--seed-pool", str(pool), "--timeout", "10", "--retries", "1",
            "--no-progress"]


def test_killing_cuma_curate_mid_run_then_rerunning_loses_and_duplicates_nothing(data_dir, tmp_path):
    pool = tmp_path / "pool.jsonl"
    lines = (data_dir / "math" / "prm800k_train_12k.jsonl").read_text(encoding="utf-8").splitlines()
    pool.write_text("\n".join(lines[::40]) + "\n", encoding="utf-8")
    out, state = tmp_path / "curated.jsonl", tmp_path / "curated.jsonl.state.json"
    server = FakeEndpoint(_gsm8k_completer(data_dir), delay_s=0.3).start()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        cmd = _curate_cmd(server.url, out, data_dir, pool, calls=14)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text() or "{}").get("next_call", 0) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.15)  # land somewhere inside a later call
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        data = out.read_bytes()
        written = data[:data.rfind(b"\n") + 1]  # every complete record the killed run wrote
        killed_records = [json.loads(line) for line in written.splitlines()]
        assert len(killed_records) >= 4 * 20
        assert json.loads(state.read_text())["next_call"] < 14  # it really died mid-run
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "calls 14/14" in done.stdout and "resumed at call" in done.stdout
    finally:
        server.stop()
    final = out.read_bytes()
    assert final.startswith(written)  # no written record lost or changed
    records = [json.loads(line) for line in final.splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    assert sorted({r["call"] for r in records}) == list(range(14))  # every call, each contributing once
    calls = [r["call"] for r in records]
    assert calls == sorted(calls)
    assert json.loads(state.read_text())["next_call"] == 14
    seen = build_pool_index([])
    for rec in records:  # no duplicates, exact or near, anywhere in the file
        assert seen.query(rec["problem"]) is None, rec["problem"]
        seen.add(rec["id"], rec["problem"])
    eval_index = build_eval_index(data_dir)
    assert all(eval_index.query(r["problem"]) is None for r in records)
    assert not any("MATHCOUNTS" in r["problem"] for r in records)
    assert all(r["generator"] == "openai:test-model" for r in records)


def test_cli_reports_an_unreachable_endpoint(data_dir, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = tmp_path / "pool.jsonl"
    lines = (data_dir / "math" / "prm800k_train_12k.jsonl").read_text(encoding="utf-8").splitlines()
    pool.write_text("\n".join(lines[::100]) + "\n", encoding="utf-8")
    cmd = _curate_cmd(f"http://127.0.0.1:{port}/v1", tmp_path / "c.jsonl", data_dir, pool, calls=2)
    cmd[cmd.index("--retries") + 1] = "0"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert f"could not reach the OpenAI-compatible endpoint http://127.0.0.1:{port}/v1" in done.stderr
    assert "re-run the same command to continue" in done.stderr
