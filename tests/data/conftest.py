"""Shared fixtures for the data tests: an offline data dir with the bundled datasets built."""

import socket

import pytest


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def bundled_dir(tmp_path_factory):
    """A shared data dir for the bundled datasets; each is built (offline) by the first test
    that uses it, which must also request `no_network`."""
    return str(tmp_path_factory.mktemp("tfds"))
