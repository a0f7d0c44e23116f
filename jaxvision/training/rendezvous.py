"""A bounded roll call of all processes before ``jax.distributed.initialize``.

When a peer never starts, ``jax.distributed.initialize`` waits its whole timeout and then aborts
the process with a C++ stack trace that names neither the address nor the missing process. So the
processes first meet over plain TCP on the port after the coordinator's (``HOST:PORT+1``): process
0 listens and waits for every process id; the others connect and announce theirs. Within
``timeout_s`` either everyone has joined (and JAX's own start-up then finds them all) or each
process raises :class:`JoinTimeoutError` naming the address and the process ids that are missing.
"""

from __future__ import annotations

import socket
import time

_GO = b"go\n"


class JoinTimeoutError(RuntimeError):
    """Not every process of a multi-process run joined within the timeout."""


def roll_call_address(coordinator_address: str) -> tuple[str, int]:
    """(host, port + 1) of a 'HOST:PORT' coordinator address; ValueError when malformed."""
    host, sep, port = coordinator_address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65535:
        raise ValueError(f"--coordinator_address={coordinator_address!r} must be HOST:PORT "
                         "(e.g. 10.0.0.1:1234), the same on every process.")
    return host.strip("[]"), int(port) + 1


def join(coordinator_address: str, num_processes: int, process_id: int, timeout_s: float) -> None:
    """Return once all ``num_processes`` processes have called ``join``; else JoinTimeoutError."""
    host, port = roll_call_address(coordinator_address)
    deadline = time.monotonic() + timeout_s
    if process_id == 0:
        _lead(port, num_processes, deadline, coordinator_address, timeout_s)
    else:
        _follow(host, port, process_id, deadline, coordinator_address, timeout_s)


def _lead(port: int, n: int, deadline: float, address: str, timeout_s: float) -> None:
    with socket.create_server(("", port), reuse_port=False) as server:
        joined: dict[int, socket.socket] = {}
        try:
            while len(joined) < n - 1:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(range(1, n)) - set(joined))
                    raise JoinTimeoutError(
                        f"process 0 (coordinator {address}): process id(s) {missing} of "
                        f"{n} did not join within {timeout_s:g} s; start them with the same "
                        f"--coordinator_address and --num_processes={n}, or raise "
                        "--join_timeout_s")
                server.settimeout(min(left, 1.0))
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                pid = _read_id(conn)
                if pid is None or not 0 < pid < n or pid in joined:
                    conn.close()
                    continue
                joined[pid] = conn
            for conn in joined.values():
                conn.sendall(_GO)
        finally:
            for conn in joined.values():
                conn.close()


def _read_id(conn: socket.socket) -> int | None:
    try:
        data = conn.recv(32)
        return int(data.strip())
    except (OSError, ValueError):
        return None


def _follow(host: str, port: int, pid: int, deadline: float, address: str,
            timeout_s: float) -> None:
    reached = False
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0) as conn:
                reached = True
                conn.sendall(f"{pid}\n".encode())
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                if conn.recv(8) == _GO:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    what = ("reached the coordinator, but not every process joined" if reached
            else "could not reach the coordinator (is process 0 running?)")
    raise JoinTimeoutError(f"process {pid}: {what} at {address} within {timeout_s:g} s; start "
                           "every process with the same --coordinator_address and "
                           "--num_processes, or raise --join_timeout_s")
