"""Configuration-only moves: a `chroma run` server instead of the embedded store, and an
OpenAI-compatible embeddings API (a small local server speaking the same protocol)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import chromadb
import pytest

from email_assets.defs.materialize import materialize_partitions
from email_assets.demo.dovecot import free_port
from email_assets.embedding import embedder_from_spec
from email_assets_tests.conftest import add_account, message, run_cli, utc

DAY = dt.date(2026, 11, 20)
MESSAGES = [
    (message("Lisbon offsite", "The hotel for the offsite is near Alfama."), utc(DAY, 9)),
    (message("Disk outage", "The database primary ran out of disk space."), utc(DAY, 10)),
]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    executable = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen(
        [str(executable), "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("chroma run did not start") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_chroma_server_mode(mail_user, instance, chroma_server, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EMAIL_ASSETS_CHROMA", chroma_server)
    mail_user.append(MESSAGES)
    assert add_account(mail_user, "work") == 0
    assert materialize_partitions(instance, "work", [DAY])[0].success
    assert materialize_partitions(instance, "work", [DAY])[0].success  # idempotent on the server too
    port = int(chroma_server.rsplit(":", 1)[1])
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    [collection] = client.list_collections()
    assert client.get_collection(collection.name).count() == 2
    capsys.readouterr()
    assert run_cli(["search", "where is the hotel", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["subject"] == "Lisbon offsite"


def fake_vector(text: str, dimensions: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [byte / 255.0 for byte in digest[:dimensions]]


class EmbeddingsHandler(BaseHTTPRequestHandler):
    """POST /v1/embeddings as the OpenAI API answers it; remembers what it was sent."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        EmbeddingsHandler.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        answer = {
            "object": "list",
            "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": fake_vector(t)} for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_api() -> Iterator[str]:
    EmbeddingsHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def test_openai_compatible_embedder(mail_user, instance, embeddings_api, monkeypatch, capsys) -> None:
    api_key = "sk-test-" + hashlib.sha256(socket.gethostname().encode()).hexdigest()[:20]
    monkeypatch.setenv("EMAIL_ASSETS_EMBEDDER", "openai:text-embedding-3-small")
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", embeddings_api)
    embedder_from_spec.cache_clear()
    mail_user.append(MESSAGES)
    assert add_account(mail_user, "work") == 0
    result = materialize_partitions(instance, "work", [DAY])[0]
    assert result.success
    calls = [call for call in EmbeddingsHandler.seen if call["path"] == "/v1/embeddings"]
    assert calls and all(call["model"] == "text-embedding-3-small" for call in calls)
    assert all(call["auth"] == f"Bearer {api_key}" for call in calls)
    embedded_texts = [text for call in calls for text in call["input"]]
    assert len(embedded_texts) == 2

    from email_assets import settings
    from email_assets.storage.vectors import VectorStore

    vectors = VectorStore(settings.chroma_location(), "openai:text-embedding-3-small")
    stored = vectors.collection.get(include=["embeddings", "documents"])
    for document, vector in zip(stored["documents"], stored["embeddings"], strict=True):
        assert list(vector) == pytest.approx(fake_vector(document), abs=1e-6)

    capsys.readouterr()
    assert run_cli(["search", "Subject: Disk outage\n\nThe database primary ran out of disk space.", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["subject"] == "Disk outage"
    for record in instance.get_records_for_run(result.run_id).records:
        assert api_key not in str(record.event_log_entry)
    embedder_from_spec.cache_clear()
