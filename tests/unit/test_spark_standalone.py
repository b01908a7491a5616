"""The standalone master's status poll against a loopback HTTP server that answers as the Spark UI
does while it starts: refused, then its HTML page, then JSON."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ecdctr_pipeline.data.spark_standalone import _free_port, master_status


def test_master_status_is_none_until_the_ui_answers_json():
    port = _free_port()
    url = f"http://127.0.0.1:{port}/json/"
    assert master_status(url) is None  # nothing listening yet
    answers = [(b"text/html", b"<html><body>Spark Master at spark://...</body></html>"),
               (b"application/json", json.dumps({"workers": [{"state": "ALIVE"}]}).encode())]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            kind, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(200)
            self.send_header("Content-Type", kind.decode())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert master_status(url) is None  # the HTML start page, not a crash
        assert master_status(url) == {"workers": [{"state": "ALIVE"}]}
    finally:
        server.shutdown()
        server.server_close()
