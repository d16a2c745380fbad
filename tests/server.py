"""Start the real `advocata-chat serve` in a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, database_url: str | None, *args: str, **env: str) -> None:
        """`database_url=None` lets `serve` start the embedded PostgreSQL (and migrate it);
        `args` go to `serve`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "DATABASE_URL": database_url, "AUTO_MIGRATE": "false"}
        if database_url is None:
            environment.update(DATABASE_URL="", AUTO_MIGRATE="true")
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            environment.pop(name, None)
        environment.update(env)
        # Logs go to a file: an unread pipe fills up and then blocks the server.
        self.log = tempfile.NamedTemporaryFile(prefix="advocata-server-", suffix=".log")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "advocata_chat.cli", "serve", "--port", str(self.port), *args],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait_ready(self, timeout: float = 30) -> Server:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.logs()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def logs(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.log.closed:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
