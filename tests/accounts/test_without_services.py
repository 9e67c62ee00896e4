"""Accounts pieces without services: argon2 at rest, the same answer for unknown users, a bound on
concurrent hashes (each holds 64 MiB), CSRF tokens, and deleting a project's payload files."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from core.accounts import HashingSlots, check_password, csrf_matches, csrf_token_for, hash_password, normalize_email, verify_password


def test_hash_is_argon2id_and_verifies_only_the_password():
    stored = hash_password("correct horse 1")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse 1") == (True, False)
    assert verify_password(stored, "correct horse 2") == (False, False)
    assert verify_password(None, "correct horse 1") == (False, False)  # unknown user: checked against a dummy
    assert verify_password("not a hash", "x") == (False, False)


def test_bad_email_and_password_name_the_field():
    assert normalize_email("  Ada@Example.COM ") == "ada@example.com"
    for bad in ("", "ada", "@x", "a@", "a b@x.io", "a@b@c"):
        with pytest.raises(ValueError, match="^email"):
            normalize_email(bad)
    with pytest.raises(ValueError, match="^password"):
        check_password("short")


def test_csrf_token_is_tied_to_its_session():
    assert csrf_matches("session-a", csrf_token_for("session-a"))
    assert not csrf_matches("session-b", csrf_token_for("session-a"))
    assert not csrf_matches("session-a", None) and not csrf_matches("session-a", "")


def test_no_more_than_the_allowed_hashes_run_at_once():
    running, most, lock = 0, 0, threading.Lock()

    def work(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return i

    async def flood():
        slots = HashingSlots(2)
        return await asyncio.gather(*(slots.run(work, i) for i in range(8)))

    assert asyncio.run(flood()) == list(range(8))
    assert most == 2


def test_file_blob_store_deletes_one_projects_payloads(tmp_path):
    from core.blobs import FileBlobStore

    store = FileBlobStore(tmp_path / "blobs")
    store.put("p1/t1/s1/input", b"a")
    store.put("p1/t2/s1/output", b"b")
    store.put("p10/t1/s1/input", b"c")  # shares the first characters, not the folder
    assert store.delete_prefix("p1") == 2
    assert store.get("p10/t1/s1/input") == b"c"
    with pytest.raises(FileNotFoundError):
        store.get("p1/t1/s1/input")
    assert store.delete_prefix("p1") == 0 and store.delete_prefix("") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("../outside")
