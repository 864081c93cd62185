"""A caller that hangs up stops the work it asked for: an abandoned /predict does not run to its end."""

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from labelloop.backend.app import create_app
from labelloop.settings import LabelLoopSettings
from labelloop.studio.localstudio import free_port

from .conftest import SENTIMENT


@pytest.mark.model
def test_an_abandoned_predict_stops_after_the_chunk_in_progress(tmp_path):
    app = create_app(LabelLoopSettings(home=tmp_path, push_predictions=False), train_in_background=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        httpx.post(base + "/predict", json={"tasks": [{"data": {"text": "warm"}}], "label_config": SENTIMENT},
                   timeout=120)  # the encoder is loaded
        words = "the film was long and the plot was thin but the actors did what they could with it"
        body = json.dumps({"tasks": [{"id": i, "data": {"text": f"review {i}: {words}"}} for i in range(5000)],
                           "label_config": SENTIMENT}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.3)  # the request is read and the first chunk is being predicted; then we hang up
        deadline = time.monotonic() + 60
        metric = 0.0
        while time.monotonic() < deadline:
            text = httpx.get(base + "/metrics").text
            metric = float(next(line.split()[1] for line in text.splitlines()
                                if line.startswith("labelloop_predicted_tasks_total ")))
            requests = float(next(line.split()[1] for line in text.splitlines()
                                  if line.startswith("labelloop_predict_requests_total ")))
            if requests >= 2 and metric > 1:
                break
            time.sleep(0.2)
        time.sleep(3)  # had it gone on, the other chunks would be counted by now
        text = httpx.get(base + "/metrics").text
        done = float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("labelloop_predicted_tasks_total ")))
        assert 1 < done <= 1 + 2 * 1024, done
    finally:
        server.should_exit = True
        thread.join(10)
