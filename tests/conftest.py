"""Fixtures shared by every suite: a fresh database per test session, cloned from the
migrated template, and helpers to act as PostgREST would for a user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack import cluster, testdb
from devstack.settings import target


@pytest.fixture(scope="session")
def server_url() -> str:
    t = target()
    if not t.from_env:
        cluster.start()
        cluster.wait_until_accepting()
    return t.url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """One throwaway database for the session (tests that commit clean up after
    themselves or use `fresh_database_url`)."""
    url = testdb.create(server_url)
    yield url
    testdb.drop(server_url, url)


@pytest.fixture
def fresh_database_url(server_url: str) -> Iterator[str]:
    """A database of its own for one test: for tests that commit, restart or kill."""
    url = testdb.create(server_url)
    yield url
    testdb.drop(server_url, url)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection whose work is rolled back after the test."""
    with psycopg.connect(database_url) as conn:
        yield conn
        conn.rollback()


@pytest.fixture(scope="session")
def tiny_asr_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-ASR model (bench/tiny_qwen_asr_model.py), built once per
    session; it also serves as its own forced aligner."""
    from bench.tiny_qwen_asr_model import build_tiny_asr_model

    return build_tiny_asr_model(tmp_path_factory.mktemp("qwen-asr") / "Qwen3-ASR-tiny")
