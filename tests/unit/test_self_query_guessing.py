"""Self-query guessing (issue 14 item 15): limits across calls per caller and per ticket, persisted in the
store; the password hash keyed with a server key kept outside the database; older hashes upgraded.

On SQLite and PostgreSQL (tests/unit/test_store.py's `make_store`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from model.secrets import QUERY_KEY_ENV, query_key
from model.ticket_state import QueryLimited
from ticketbridge.schema import SelfQueryFailure, Ticket
from model.passwords import (check_password, check_query_password, hash_password, hash_query_password, hash_salt,
                             is_slow)
from ticketbridge.store import TicketStore
from tests.unit.test_store import make_store, rec  # noqa: F401 - fixture

CITIZEN = "13800138000"


def wrong_for(password: str) -> str:
    return f"{(int(password) + 1) % 10**6:06d}"


async def test_a_keyed_hash_needs_the_key_and_an_old_hash_still_checks() -> None:
    key = b"k" * 32
    keyed = hash_password("123456", key=key)
    assert keyed.startswith("hscrypt$") and check_password("123456", keyed, key)
    assert not check_password("123456", keyed)  # a copy of the database without the key
    assert not check_password("123456", keyed, b"another key")
    old = hash_password("123456")
    assert old.startswith("scrypt$") and check_password("123456", old, key)


def test_a_query_password_is_a_salted_keyed_hmac_and_older_scrypt_hashes_still_check() -> None:
    key = b"k" * 32
    new = hash_query_password("123456", key)
    scheme, salt, mac = new.split("$")
    assert scheme == "hmac" and len(salt) == 32 and len(mac) == 64 and not is_slow(new)
    assert check_query_password("123456", new, key)
    assert not check_query_password("123457", new, key)
    assert not check_query_password("123456", new, None)  # a copy of the database without the key
    assert not check_query_password("123456", new, b"another key")
    # salted: the same password on two tickets never gives the same hash
    assert hash_query_password("123456", key) != new and hash_salt(new) == salt
    with pytest.raises(ValueError, match="query key"):
        hash_query_password("123456", b"")
    # the tickets issued before the HMAC scheme: keyed and unkeyed scrypt, both still open their ticket
    for old in (hash_password("123456", key=key), hash_password("123456")):
        assert is_slow(old) and check_query_password("123456", old, key)
        assert not check_query_password("654321", old, key)
    assert not check_query_password("123456", hash_password("123456", key=key), None)
    for bad in ("", "hmac$zz$00", "hmac$00", "hmac$$", "md5$00$00", "scrypt$1$2"):
        assert not check_query_password("123456", bad, key)


def test_the_key_comes_from_the_environment_or_a_root_only_file(tmp_path: Any, monkeypatch: Any) -> None:
    assert query_key({QUERY_KEY_ENV: "from-env"}) == b"from-env"
    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path))
    monkeypatch.delenv(QUERY_KEY_ENV, raising=False)
    first = query_key()
    assert len(first) == 32 and query_key() == first
    assert oct((tmp_path / "query.key").stat().st_mode & 0o777) == "0o600"


async def test_new_tickets_get_keyed_hashes_and_old_ones_are_upgraded_on_a_right_password(make_store) -> None:  # noqa: F811
    store: TicketStore = await make_store()
    saved = await store.save_call(rec())
    password = await store.issue_password(saved.ticket_no, sms=False)
    t = await store.get_ticket(saved.ticket_no)
    assert t.query_password_hash.startswith("hmac$")
    # tickets from before the HMAC scheme (keyed scrypt) and before the key (unkeyed scrypt): their hash
    # still opens them, a wrong password does not, and a right one re-hashes them with the keyed HMAC
    for old in (hash_password(password, key=store._query_key), hash_password(password)):
        _, write = store._sessions()
        async with write() as s, s.begin():
            row = (await s.execute(select(Ticket).where(Ticket.id == t.id))).scalar_one()
            row.query_password_hash = old
        assert await store.verify_query(saved.ticket_no, wrong_for(password)) is None
        assert (await store.get_ticket(saved.ticket_no)).query_password_hash == old
        assert await store.verify_query(saved.ticket_no, password, caller=CITIZEN) is not None
        t = await store.get_ticket(saved.ticket_no)
        assert t.query_password_hash.startswith("hmac$")
        assert await store.verify_query(saved.ticket_no, password, caller=CITIZEN) is not None


async def test_one_caller_guessing_across_calls_is_stopped(make_store) -> None:  # noqa: F811
    store: TicketStore = await make_store()
    store.config.self_query.max_failures_per_caller = 4
    saved = await store.save_call(rec(caller="13900000001"))
    password = await store.issue_password(saved.ticket_no, sms=False)
    guesser = "13700000000"
    for i in range(4):  # e.g. two calls of two tries each: the count is across calls
        assert await store.verify_query(f"9901010000{i:02d}", "000000", caller=guesser) is None
    with pytest.raises(QueryLimited, match="caller"):
        await store.verify_query(saved.ticket_no, password, caller=guesser)
    # persisted: another controller (a restart) sees the same count
    again: TicketStore = await make_store()
    with pytest.raises(QueryLimited):
        await again.verify_query(saved.ticket_no, password, caller=guesser)
    # the number is never stored, only a keyed hash of it
    read, _ = store._sessions()
    async with read() as s:
        keys = {r.caller_key for r in (await s.execute(select(SelfQueryFailure))).scalars()}
    assert keys and not any(guesser in k for k in keys)
    # another caller is not held back
    assert await store.verify_query(saved.ticket_no, password, caller="13600000000") is not None


async def test_many_numbers_guessing_one_ticket_are_stopped_but_never_its_own_caller(make_store) -> None:  # noqa: F811
    store: TicketStore = await make_store()
    store.config.self_query.max_failures_per_ticket = 3
    saved = await store.save_call(rec(caller=CITIZEN))
    password = await store.issue_password(saved.ticket_no, sms=False)
    for i in range(3):
        assert await store.verify_query(saved.ticket_no, wrong_for(password), caller=f"1370000000{i}") is None
    with pytest.raises(QueryLimited, match="ticket"):
        await store.verify_query(saved.ticket_no, password, caller="13700000009")
    # the citizen, calling from the number on the ticket, is never locked out by others' guesses
    assert await store.verify_query(saved.ticket_no, password, caller=CITIZEN) is not None


async def test_old_failures_leave_the_window(make_store) -> None:  # noqa: F811
    store: TicketStore = await make_store()
    store.config.self_query.max_failures_per_caller = 2
    saved = await store.save_call(rec(caller="13900000001"))
    password = await store.issue_password(saved.ticket_no, sms=False)
    for _ in range(2):
        await store.verify_query("990101000001", "000000", caller="13700000000")
    with pytest.raises(QueryLimited):
        await store.verify_query(saved.ticket_no, password, caller="13700000000")
    make_store.clock.now += dt.timedelta(hours=store.config.self_query.guess_window_h, seconds=1)
    assert await store.verify_query(saved.ticket_no, password, caller="13700000000") is not None
