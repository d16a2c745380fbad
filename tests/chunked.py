"""A raw HTTP/1.1 client that sends a request body in chunks and stops when answered."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterable


def post_chunked(
    port: int, path: str, headers: dict[str, str], chunks: Iterable[bytes]
) -> tuple[bytes, int]:
    """POST with `Transfer-Encoding: chunked` (so no length is declared), sending chunks
    until the server answers or closes. Returns (the response, body bytes sent by then)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    head += "Connection: close\r\n"  # one request: the server closes after its answer
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    sent = 0
    try:
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered (or closed): stop sending
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    response = b""
    try:
        while block := sock.recv(65536):  # the server closes after answering
            response += block
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return response, sent
