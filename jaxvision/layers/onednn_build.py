"""Building and loading jaxvision's oneDNN handlers (XLA FFI custom calls written in C++).

Each handler library is one C++ source in ``jaxvision/layers/csrc/`` (shipped with the package):
``onednn_conv.cc`` (convolutions), ``onednn_pool.cc`` (pooling), and any other ``onednn_<op>.cc``.
A source is compiled once per machine, on first use, with the system C++ compiler (``$CXX`` or
``g++``; a launcher such as ``ccache g++`` is accepted) against JAX's FFI headers
(``jax.ffi.include_dir()``) and oneDNN (the ``onednn-cpu-gomp`` / ``onednn-devel-cpu-gomp`` wheels,
installed with jaxvision on x86-64 Linux; or a oneDNN installation named by ``$DNNLROOT``), into
``$XDG_CACHE_HOME/jaxvision/onednn/<hash>/lib<name>.so``. The hash covers the source, the shared
headers (``csrc/*.h``: ``onednn_common.h``), the jax/jaxlib versions, the compiler and the oneDNN
library, so an upgrade rebuilds. A SHA-256 of the library is recorded at build time and a copy
that does not match is rebuilt (a truncated library crashes the process that loads it). An
unwritable cache falls back to a per-user directory under the system's temp dir.

``load(name, targets)`` builds, loads and registers a source's handlers and says, once per
process, why it could not; ``JAXVISION_ONEDNN=0`` switches every handler off.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.metadata
import logging
import os
import shlex
import shutil
import site
import stat
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp

from jaxvision import env_settings, user_cache

__all__ = ["load", "why_not_loaded", "switched_off", "source_path", "handler_functions"]

log = logging.getLogger(__name__)

CSRC = os.path.join(os.path.dirname(__file__), "csrc")
# A compile takes 5-30 s; a compiler still running after this is stuck (e.g. a ccache lock).
COMPILE_TIMEOUT_S = 600
# name -> (loaded?, why not): one attempt per process and source.
_state: dict[str, tuple[bool, str | None]] = {}
_warned: list[str] = []  # handlers whose failure was already said (one warning per process)


def source_path(name: str) -> str:
    """``csrc/<name>.cc``."""
    return os.path.join(CSRC, f"{name}.cc")


def switched_off() -> bool:
    """Whether ``JAXVISION_ONEDNN`` is set to 0/false/no/off (1/true/yes/on or unset: on; any
    other value raises ValueError, ``env_settings.switch``). Read when a handler library is
    first needed: set it before the first model is traced (a library once loaded stays)."""
    return not env_settings.switch("JAXVISION_ONEDNN")


def _onednn_root() -> tuple[str, str] | None:
    """(include dir, lib dir) of a oneDNN installation: ``$DNNLROOT``, else this environment's
    prefix or the user base (where the ``onednn-*-cpu-gomp`` wheels put it with and without
    ``pip install --user``)."""
    for root in (os.environ.get("DNNLROOT"), sys.prefix, site.USER_BASE, sys.base_prefix):
        if not root:
            continue
        inc, lib = os.path.join(root, "include"), os.path.join(root, "lib")
        if (os.path.exists(os.path.join(inc, "oneapi", "dnnl", "dnnl.hpp"))
                and glob.glob(os.path.join(lib, "libdnnl.so*"))):
            return inc, lib
    return None


def _compiler() -> str:
    """The C++ compiler command line ($CXX or g++) with its first word resolved. Raises
    RuntimeError naming what is missing."""
    try:
        cxx_cmd = shlex.split(os.environ.get("CXX") or "g++")
    except ValueError as e:  # an unbalanced quote
        raise RuntimeError(f"$CXX={os.environ['CXX']!r} cannot be parsed as a command line ({e}); "
                           "fix its quoting") from None
    if not cxx_cmd or shutil.which(cxx_cmd[0]) is None:
        raise RuntimeError(
            f"no C++ compiler: {cxx_cmd[0] if cxx_cmd else ''!r} (from $CXX="
            f"{os.environ['CXX']!r}) is not a command; install it or point $CXX at a compiler"
            if os.environ.get("CXX") else "no C++ compiler: install g++ or set $CXX")
    return " ".join([shutil.which(cxx_cmd[0]), *cxx_cmd[1:]])


def build(name: str = "onednn_conv") -> str:
    """Path of the compiled library of ``csrc/<name>.cc``, compiling it first when it is not
    cached. Raises RuntimeError naming what is missing."""
    if sys.platform != "linux":
        raise RuntimeError(f"built only on Linux (this is {sys.platform})")
    cxx = _compiler()
    root = _onednn_root()
    if root is None:
        raise RuntimeError("oneDNN not found (pip install onednn-cpu-gomp onednn-devel-cpu-gomp, "
                           "or set $DNNLROOT)")
    inc, lib = root
    libdnnl = os.path.realpath(sorted(glob.glob(os.path.join(lib, "libdnnl.so*")))[0])
    source = source_path(name)
    digest = hashlib.sha256()
    for path in [source, *sorted(glob.glob(os.path.join(CSRC, "*.h")))]:  # and shared headers
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(f"{jax.__version__}|{importlib.metadata.version('jaxlib')}|{cxx}|{libdnnl}|"
                  f"{os.path.getsize(libdnnl)}".encode())
    key = digest.hexdigest()[:16]
    cmd = [*cxx.split(" "), "-O2", "-std=c++17", "-shared", "-fPIC", "-w", "-I",
           jax.ffi.include_dir(), "-I", inc, source, "-L", lib, "-ldnnl", f"-Wl,-rpath,{lib}"]
    # The user's cache, else (unwritable) a private per-user directory under the system's temp dir.
    tmp_base = os.path.join(tempfile.gettempdir(), f"jaxvision-{os.getuid()}")
    errors = []
    for out_dir in (user_cache.directory("onednn", key), os.path.join(tmp_base, "onednn", key)):
        try:
            if out_dir.startswith(tmp_base + os.sep):
                _private_dir(tmp_base)
            return cached_or_compiled(out_dir, cmd, f"libjaxvision_{name}.so")
        except OSError as e:
            errors.append(f"{out_dir}: {e}")
    raise RuntimeError("cannot write the compiled library: " + "; ".join(errors))


def _private_dir(path: str) -> None:
    """Creates ``path`` (mode 0700) or checks the existing one is this user's own: a real
    directory, not a symlink, owned by this user and writable by no one else. The temp dir is
    shared by every user, and its name is predictable: a library another user planted there (with
    a matching hash file) would otherwise be loaded and run as this user. Raises OSError
    (``PermissionError``) naming what is wrong."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{path} is not a private directory of this user (a symlink, owned "
                              f"by uid {st.st_uid}, or writable by others); refusing to load "
                              f"compiled code from it: remove it, or make the user cache "
                              f"writable (see jaxvision.user_cache)")


def cached_or_compiled(out_dir: str, cmd: list[str], filename: str) -> str:
    """``out_dir/filename``, compiled with ``cmd`` (+ ``-o``) unless a copy whose recorded
    SHA-256 matches is there: a truncated or damaged file (an interrupted copy, a full disk)
    would crash the process that loads it, so it is rebuilt instead."""
    out = os.path.join(out_dir, filename)
    if intact(out):
        return out
    os.makedirs(out_dir, exist_ok=True)
    # Compile to a temporary name and rename: concurrent processes (pytest -n) may build at once.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        try:
            done = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True,
                                  timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the C++ compiler ({cmd[0]}) did not finish in "
                               f"{COMPILE_TIMEOUT_S} s; check it (a stuck ccache lock?) or set "
                               f"JAXVISION_ONEDNN=0") from None
        if done.returncode != 0:
            why = _first_error(done.stderr.strip() or done.stdout.strip())
            source = next((c for c in cmd if c.endswith(".cc")), "the handlers")
            raise RuntimeError(f"compiling {source} failed (exit status {done.returncode})"
                               + (f": {why}" if why else ""))
        with open(tmp + ".sha256", "w") as f:
            f.write(_sha256(tmp))
        os.replace(tmp + ".sha256", out + ".sha256")
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp + ".sha256"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return out


def _first_error(output: str, limit: int = 800) -> str:
    """The compiler's output from its first error on (the root cause; later ones follow from
    it), at most ``limit`` characters."""
    lines = output.splitlines()
    first = next((i for i, line in enumerate(lines) if "error" in line.lower()), 0)
    return "\n".join(lines[max(first - 1, 0):])[:limit]


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def intact(path: str) -> bool:
    """Whether ``path`` matches the SHA-256 recorded beside it when it was built."""
    try:
        with open(path + ".sha256") as f:
            return f.read().strip() == _sha256(path)
    except OSError:
        return False


def load(name: str, targets: dict[str, str], what: str) -> bool:
    """Builds (once per machine) and loads ``csrc/<name>.cc`` and registers each of its FFI
    ``targets`` (``{suffix: C symbol}``) for the CPU as ``jaxvision_<name>_<suffix>``. Returns
    whether that worked; on failure logs one warning naming why and what falls back (``what``,
    e.g. "convolutions use jaxvision's pure-JAX CPU lowerings") and ``why_not_loaded(name)``
    says why. One attempt per process and source."""
    if name in _state:
        return _state[name][0]
    if switched_off():
        _state[name] = (False, "switched off by JAXVISION_ONEDNN")
        return False
    path = None
    try:
        path = build(name)
        library = ctypes.cdll.LoadLibrary(path)
        for suffix, symbol in targets.items():
            jax.ffi.register_ffi_target(f"jaxvision_{name}_{suffix}",
                                        jax.ffi.pycapsule(getattr(library, symbol)),
                                        platform="cpu")
    except (RuntimeError, OSError, AttributeError) as e:
        if path is not None:  # built (or found cached) but unusable: say how to rebuild it
            e = type(e)(f"{e} (delete {path} to rebuild it)")
        _state[name] = (False, str(e))
        # One warning line per process, so a user who expected PyTorch-class CPU speed knows why
        # not; the other handlers (usually failing for the same reason: no compiler) and the
        # compiler's whole message are at info level and in why_not_loaded().
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        level = logging.INFO if _warned else logging.WARNING
        _warned.append(name)
        log.log(level, "oneDNN handlers %s unavailable (%s); %s (JAXVISION_ONEDNN=0 silences "
                "this)", name, first, what)
        log.info("oneDNN handlers %s: %s", name, e)
        return False
    _state[name] = (True, None)
    return True


def why_not_loaded(name: str) -> str | None:
    """Why ``load(name, ...)`` returned False; None when it loaded or was not tried."""
    return _state.get(name, (True, None))[1]


def handler_functions(name: str, targets: dict[str, str], what: str):
    """``(load, available, why_unavailable)`` for ``csrc/<name>.cc``, the three functions every
    oneDNN op module exposes: ``load()`` / ``available()`` build (once per machine) and register
    the handlers and return whether that worked; ``why_unavailable()`` says why not (None when
    they are available). ``what``: what falls back, for the one warning line."""
    def _load() -> bool:
        return load(name, targets, what)

    def available() -> bool:
        """Whether the handlers are built and registered (builds them on the first call)."""
        return _load()

    def why_unavailable() -> str | None:
        """Why ``available()`` is False (None when it is True)."""
        _load()
        return why_not_loaded(name)

    return _load, available, why_unavailable


def with_reference_derivatives(fast, reference):
    """``fast`` (a function of arrays computed by handlers, which JAX cannot differentiate) with
    the derivatives of ``reference`` (the same function in pure JAX), of every order: the
    handlers run for the values; a derivative, e.g. of a backward pass for a gradient penalty,
    is ``reference``'s autodiff."""
    f = jax.custom_vjp(fast)
    # The forward rule calls ``f``, not ``fast``: under a third (or higher) derivative the rule
    # itself is differentiated by the outer transforms, which must meet this rule again, not the
    # bare custom call (which has no derivative).
    f.defvjp(lambda *args: (f(*args), args),
             lambda args, ct: jax.vjp(reference, *args)[1](ct))
    return f


def single_device() -> bool:
    """Whether this process's programs run on one device. The oneDNN handlers are used only
    then: XLA's SPMD partitioner would replicate a custom call over a mesh (gathering the
    batch), so with several devices the pure-JAX forms, which partition, are kept."""
    return jax.device_count() == 1


# The dtypes every oneDNN handler here is built for (one instantiation each).
DTYPES = (jnp.float32, jnp.bfloat16)


def takes_dtype(*arrays) -> bool:
    """Whether the arrays share one dtype the handlers are built for (``DTYPES``)."""
    return (len({a.dtype for a in arrays}) == 1
            and any(arrays[0].dtype == d for d in DTYPES))


def usable_here(load) -> bool:
    """Whether a handler family can be traced into this process's programs: the CPU backend
    (the handlers are registered for the CPU only, also when ``set_conv_impl('onednn')`` is
    forced on another backend), one device (``single_device``) and ``load()``, the family's
    loader, True."""
    return jax.default_backend() == "cpu" and single_device() and load()
