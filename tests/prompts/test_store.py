"""core.prompts on a real PostgreSQL: numbering, immutability, labels (atomic moves, `latest`), project
scoping, validation, diff and compile."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from core import prompts
from core.auth import ensure_project

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def pool(migrated_postgres):
    async with AsyncConnectionPool(migrated_postgres, min_size=1, max_size=12, kwargs={"autocommit": True}) as p:
        yield p


@pytest.fixture
def project(migrated_postgres) -> str:
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        return ensure_project(conn, f"prompts-{uuid.uuid4().hex[:8]}").id


async def test_versions_are_numbered_per_name_and_labels_follow_moves(pool, project):
    v1 = await prompts.create_version(pool, project, "qa", prompt="Answer {{question}}", config={"model": "m1"},
                                      tags=["a"], message="first", author="alice", labels=["production"])
    v2 = await prompts.create_version(pool, project, "qa", prompt=[{"role": "system", "content": "Be brief"},
                                                                   {"role": "user", "content": "{{question}}"}])
    other = await prompts.create_version(pool, project, "other", prompt="x")
    assert (v1["version"], v2["version"], other["version"]) == (1, 2, 1)
    assert v1["type"] == "text" and v2["type"] == "chat"
    assert v1["labels"] == ["latest", "production"] and v1["author"] == "alice" and v1["message"] == "first"

    production = await prompts.get_version(pool, project, "qa")  # neither given → production
    assert production["version"] == 1 and production["labels"] == ["production"]  # no longer latest
    assert production["prompt"] == "Answer {{question}}" and production["config"] == {"model": "m1"}
    latest = await prompts.get_version(pool, project, "qa", label="latest")
    assert latest["version"] == 2 and latest["prompt"][1] == {"role": "user", "content": "{{question}}"}
    assert (await prompts.get_version(pool, project, "qa", version=1))["tags"] == ["a"]
    assert await prompts.get_version(pool, project, "qa", version=3) is None
    assert await prompts.get_version(pool, project, "qa", label="staging") is None
    assert await prompts.get_version(pool, project, "missing") is None

    moved = await prompts.move_label(pool, project, "qa", "production", 2)
    assert moved["version"] == 2 and moved["labels"] == ["latest", "production"]
    assert (await prompts.get_version(pool, project, "qa"))["version"] == 2
    assert (await prompts.get_version(pool, project, "qa", version=1))["labels"] == []

    listed = {p["name"]: p for p in await prompts.list_prompts(pool, project)}
    assert listed["qa"]["latest_version"] == 2 and listed["qa"]["labels"] == {"production": 2, "latest": 2}
    assert [v["version"] for v in await prompts.list_versions(pool, project, "qa")] == [2, 1]


async def test_latest_cannot_be_moved_and_missing_versions_are_not_found(pool, project):
    await prompts.create_version(pool, project, "p", prompt="one")
    with pytest.raises(prompts.PromptError, match="^label: 'latest'"):
        await prompts.move_label(pool, project, "p", "latest", 1)
    with pytest.raises(prompts.PromptNotFound, match="^version:"):
        await prompts.move_label(pool, project, "p", "production", 7)
    with pytest.raises(prompts.PromptNotFound):
        await prompts.move_label(pool, project, "nope", "production", 1)
    with pytest.raises(prompts.PromptNotFound):
        await prompts.list_versions(pool, project, "nope")


async def test_concurrent_creates_and_label_moves_leave_one_version_per_label(pool, project):
    created = await asyncio.gather(*(prompts.create_version(pool, project, "race", prompt=f"v{i}") for i in range(8)))
    assert sorted(v["version"] for v in created) == list(range(1, 9))
    for _ in range(5):
        await asyncio.gather(*(prompts.move_label(pool, project, "race", label, v)
                               for v in range(1, 9) for label in ("production", "staging")))
        async with pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT label, count(*) FROM prompt_labels WHERE project_id = %s AND name = 'race' GROUP BY label",
                (project,))).fetchall()
        assert dict(rows) == {"production": 1, "staging": 1}
        production = await prompts.get_version(pool, project, "race")
        assert production["version"] in range(1, 9) and "production" in production["labels"]
        holders = [v for v in await prompts.list_versions(pool, project, "race") if "production" in v["labels"]]
        assert [v["version"] for v in holders] == [production["version"]]


async def test_a_project_never_sees_another_projects_prompts(pool, project, migrated_postgres):
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        other = ensure_project(conn, f"prompts-{uuid.uuid4().hex[:8]}").id
    await prompts.create_version(pool, project, "secret", prompt="A's prompt", labels=["production"])
    assert await prompts.get_version(pool, other, "secret") is None
    assert await prompts.get_version(pool, other, "secret", version=1) is None
    assert await prompts.list_prompts(pool, other) == []
    with pytest.raises(prompts.PromptNotFound):
        await prompts.move_label(pool, other, "secret", "production", 1)
    mine = await prompts.create_version(pool, other, "secret", prompt="B's prompt")
    assert mine["version"] == 1
    assert (await prompts.get_version(pool, project, "secret", label="latest"))["prompt"] == "A's prompt"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": "bad name", "prompt": "x"}, "name"),
    ({"name": "ok", "prompt": 3}, "prompt"),
    ({"name": "ok", "prompt": []}, "prompt"),
    ({"name": "ok", "prompt": [{"role": "user"}]}, "prompt[0].content"),
    ({"name": "ok", "prompt": ["hi"]}, "prompt[0]"),
    ({"name": "ok", "prompt": "x", "type": "chat"}, "type"),
    ({"name": "ok", "prompt": "x\x00"}, "prompt"),
    ({"name": "ok", "prompt": "x", "config": []}, "config"),
    ({"name": "ok", "prompt": "x", "config": {"t": float("nan")}}, "config"),
    ({"name": "ok", "prompt": "x", "tags": [1]}, "tags"),
    ({"name": "ok", "prompt": "x", "labels": ["Bad Label"]}, "labels[0]"),
])
async def test_bad_input_names_the_field(pool, project, kwargs, field):
    name = kwargs.pop("name")
    with pytest.raises(prompts.PromptError) as err:
        await prompts.create_version(pool, project, name, **kwargs)
    assert str(err.value).startswith(f"{field}:")
    assert await prompts.list_prompts(pool, project) == []


def test_compile_fills_text_and_messages_and_names_a_missing_variable():
    assert prompts.compile_prompt("Hi {{ name }}, {{n}} {{user.city}}", {"name": "Ann", "n": 3, "user": {"city": "Oslo"}}) \
        == "Hi Ann, 3 Oslo"
    chat = [{"role": "system", "content": "ctx={{ctx}}"}, {"role": "user", "content": "{{q}}", "name": "u1"}]
    assert prompts.compile_prompt(chat, {"ctx": {"a": [1, "é"]}, "q": "why?"}) == [
        {"role": "system", "content": 'ctx={"a":[1,"é"]}'}, {"role": "user", "content": "why?", "name": "u1"}]
    assert chat[0]["content"] == "ctx={{ctx}}"  # the stored prompt is not changed
    with pytest.raises(KeyError, match="'missing'"):
        prompts.compile_prompt("{{missing}}", {})
    assert prompts.compile_prompt("{{missing}} {{x}}", {"x": "y"}, strict=False) == "{{missing}} y"
    assert prompts.prompt_variables(chat) == ["ctx", "q"]


def test_diff_shows_text_message_and_config_changes():
    old = {"name": "p", "version": 1, "type": "chat", "config": {"model": "a", "temperature": 0},
           "tags": ["x"], "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{q}}"}]}
    new = {**old, "version": 2, "config": {"model": "b", "temperature": 0}, "tags": ["y"],
           "prompt": [{"role": "system", "content": "Be very brief."}, {"role": "user", "content": "{{q}}"},
                      {"role": "assistant", "content": "ok"}]}
    d = prompts.diff_versions(old, new)
    assert "-Be brief.\n+Be very brief.\n" in d["prompt"]
    assert [m["status"] for m in d["messages"]] == ["changed", "same", "added"]
    assert d["messages"][1]["diff"] == ""
    assert '-  "model": "a",\n+  "model": "b",\n' in d["config"]
    assert d["tags"] == {"added": ["y"], "removed": ["x"]}


async def test_every_label_move_is_recorded_with_who_and_when(pool, project):
    await prompts.create_version(pool, project, "h", prompt="one", labels=["production"], author="alice")
    await prompts.create_version(pool, project, "h", prompt="two", author="bob")
    await prompts.move_label(pool, project, "h", "production", 2, author="carol")
    await prompts.move_label(pool, project, "h", "production", 2, author="carol")  # no change: no event
    await prompts.move_label(pool, project, "h", "staging", 1, author="dave")
    assert await prompts.remove_label(pool, project, "h", "staging", author="erin")
    assert not await prompts.remove_label(pool, project, "h", "staging", author="erin")
    events = await prompts.label_history(pool, project, "h")
    assert [(e["label"], e["from_version"], e["to_version"], e["moved_by"]) for e in events] == [
        ("staging", 1, None, "erin"), ("staging", None, 1, "dave"),
        ("production", 1, 2, "carol"), ("production", None, 1, "alice")]
    assert all(e["moved_at"] for e in events)
    with pytest.raises(prompts.PromptNotFound):
        await prompts.label_history(pool, project, "missing")


async def test_concurrent_moves_leave_a_history_that_replays_to_the_final_label(pool, project):
    for i in range(4):
        await prompts.create_version(pool, project, "replay", prompt=f"v{i}")
    await asyncio.gather(*(prompts.move_label(pool, project, "replay", "production", v % 4 + 1, author=str(v))
                           for v in range(24)))
    events = list(reversed(await prompts.label_history(pool, project, "replay", limit=1000)))
    current = None
    for e in events:  # each move starts where the previous one left the label
        assert e["from_version"] == current
        current = e["to_version"]
    assert current == (await prompts.get_version(pool, project, "replay"))["version"]
