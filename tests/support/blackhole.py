"""A TCP port that accepts connections and never answers: an unreachable database."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

__all__ = ["Blackhole"]


class Blackhole:
    """Listens on 127.0.0.1, accepts every connection and holds it without a byte.

    ``connections`` counts them: each is one call that went to the database and could only
    end by its own timeout. A count proves how many waits a run paid without timing it.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="blackhole").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(conn)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self.sock.close()
        with self._lock:
            for conn in self._held:
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
