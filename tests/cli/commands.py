"""Running ``python -m jaxvision.<command>`` in a subprocess, optionally with the network cut."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Fallback where user namespaces are not allowed: every socket connection fails, as offline.
_NO_NETWORK_SITECUSTOMIZE = '''
import socket
def _offline(*args, **kwargs):
    raise OSError(101, "Network is unreachable (blocked by the test)")
socket.socket.connect = _offline
socket.socket.connect_ex = _offline
socket.create_connection = _offline
socket.getaddrinfo = _offline
'''


def _unshare_works() -> bool:
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def offline_prefix(tmp_dir: str, env: dict) -> list[str]:
    """Command prefix (and ``env`` changes) that run a command with no network."""
    if _unshare_works():
        return ["unshare", "-rn"]
    site = os.path.join(tmp_dir, "no_network_site")
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(_NO_NETWORK_SITECUSTOMIZE)
    env["PYTHONPATH"] = os.pathsep.join([site, env.get("PYTHONPATH", "")])
    return []


def run_command(module: str, *args: str, offline_dir: str | None = None,
                env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m module args`` from the repository root; with ``offline_dir`` the network is
    cut (``unshare -rn``, else sockets blocked)."""
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONPATH", REPO)
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's machine
    prefix = offline_prefix(offline_dir, env) if offline_dir else []
    return subprocess.run([*prefix, sys.executable, "-m", module, *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=timeout)
