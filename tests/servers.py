"""Local HTTP servers on 127.0.0.1 that stand in for the model hubs in tests (no network)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path


class StaticServer:
    """Serves a folder laid out like PaddleNLP's BOS server, on 127.0.0.1; counts requests."""

    def __init__(self, root: Path, truncate: set[str] = frozenset()):
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                if name in truncate:  # announce the whole file, send 100 bytes, hang up
                    data = (root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:100])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class HubServer(StaticServer):
    """Answers Hugging Face's ``/<owner>/<repo>/resolve/<revision>/<file>`` (HEAD and GET) from a folder
    laid out as ``<root>/<owner>/<repo>/<file>``, with the headers huggingface_hub checks."""

    def __init__(self, root: Path):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool):
                server.requests.append(f"{self.command} {self.path}")
                parts = self.path.split("?")[0].lstrip("/").split("/")
                path = root.joinpath(parts[0], parts[1], *parts[4:]) if len(parts) >= 5 else None
                if path is None or parts[2] != "resolve" or not path.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
