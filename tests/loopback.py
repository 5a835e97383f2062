"""A media server on 127.0.0.1 for fetch tests: good files and error routes, with hit counts.

Routes (any name after the route prefix):
    /video/NAME      the file registered as NAME (200)
    /missing/NAME    404
    /flaky429/NAME   429 on the first request for that path, then the file
    /busy/NAME       like flaky429, with a Retry-After of `retry_after_s` seconds
    /cut/NAME        headers for the whole file, then the connection closes a third in
    /stall/NAME      headers, then nothing for `stall_s` seconds
    /tofile/NAME     a 302 redirect to file:///etc/passwd (a scheme yt-dlp must not follow)
    /nolength/NAME   the file without a Content-Length header (the connection closes at its end)
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path


class MediaServer:
    def __init__(self, files: dict[str, Path], stall_s: float = 4.0, retry_after_s: float = 1.0):
        self.files = {name: path.read_bytes() for name, path in files.items()}
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[float, str, int]] = []  # (time.time(), path, status) of every request
        self.retry_after_s = retry_after_s
        self.stall_s = stall_s
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send_response(self, code, message=None):
                server.requests.append((time.time(), self.path, code))
                super().send_response(code, message)

            def do_GET(self):
                server.hits[self.path] += 1
                route, _, name = self.path.split("?")[0].strip("/").partition("/")  # a query only makes the path distinct
                body = server.files.get(name)
                if route == "missing" or body is None:
                    self.send_error(404)
                elif route == "flaky429" and server.hits[self.path] == 1:
                    self.send_error(429)
                elif route == "busy" and server.hits[self.path] == 1:
                    self.send_response(429)
                    self.send_header("Retry-After", f"{server.retry_after_s:g}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif route == "cut":
                    self._headers(len(body))
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif route == "tofile":
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd")
                    self.end_headers()
                elif route == "nolength":
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                elif route == "stall":
                    self._headers(len(body))
                    time.sleep(server.stall_s)
                else:
                    self._headers(len(body))
                    self.wfile.write(body)

            def _headers(self, length: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(length))
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, route: str, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{route}/{name}"

    def __enter__(self) -> "MediaServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class S3Server:
    """moto's standalone S3 server on 127.0.0.1 (a process of its own), and the standard
    AWS_* variables that point the AWS clients (s3fs, pyarrow) at it: `env`."""

    def __init__(self, start_timeout_s: float = 30.0):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}"}
        self.start_timeout_s = start_timeout_s

    def __enter__(self) -> "S3Server":
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **self.env})
        deadline = time.time() + self.start_timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    self.__exit__()
                    raise RuntimeError("moto's S3 server did not start (pip install 'moto[server]')") from None
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait()
