"""Prompt management in PostgreSQL: named prompts, immutable numbered versions, movable labels.

A version is text or chat messages with ``{{variables}}``, a model config, tags, a commit message and
its author. Versions are numbered 1, 2, ... per (project, name); the number comes from one atomic
upsert on the ``prompts`` row, so concurrent creates never share a number. A label points at exactly
one version of its prompt (the table's primary key); moves of one prompt are serialised by its row
lock, so concurrent moves leave one winner, and each move is recorded (``label_history``: who promoted
what, when). ``latest`` is never stored: it is always the newest version, and cannot be moved.

Every function takes ``pg``: the services' ``AsyncConnectionPool`` (``services.require_pg()``) or an
open ``psycopg.AsyncConnection``; every query is scoped to ``project_id``. Bad input raises
``PromptError`` whose message starts with the field it is about (a 400); a missing prompt or version
raises ``PromptNotFound`` (a 404).

A version dict: ``{name, version, type, prompt, config, tags, message, author, labels, created_at}``
(``labels`` includes ``latest`` on the newest version; ``created_at`` is ISO 8601).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.storable import check_storable

LATEST = "latest"
PRODUCTION = "production"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
MAX_PROMPT_CHARS = 1_000_000
MAX_MESSAGES = 500
MAX_TAGS = 50
MAX_LABELS = 20
MAX_MESSAGE_CHARS = 10_000
# ``{{ name }}`` or a dotted path into a variable (``{{input.question}}``); the same rule as the SDK's copy.
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[\w]+)*)\s*\}\}")


class PromptError(ValueError):
    """Bad input; the message starts with the field it is about."""


class PromptNotFound(LookupError):
    pass


# --------------------------------------------------------------------------------------------- compile

def variable_value(variables: dict, path: str) -> Any:
    """The value a ``{{path}}`` names: a flat key, or a dotted path through dicts and list indexes
    (KeyError naming the path when there is none). Experiments' message templates resolve the same way."""
    if path in variables:  # a flat name that happens to contain dots wins over a path
        return variables[path]
    head, *rest = path.split(".")
    if head not in variables:
        raise KeyError(path)
    value = variables[head]
    for part in rest:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _fill(template: str, variables: dict, strict: bool) -> str:
    def one(m: re.Match) -> str:
        try:
            return _as_text(variable_value(variables, m.group(1)))
        except KeyError:
            if strict:
                raise KeyError(f"prompt variable {m.group(1)!r} was not given") from None
            return m.group(0)

    return VARIABLE.sub(one, template)


def compile_prompt(prompt: str | list[dict], variables: dict, *, strict: bool = True) -> str | list[dict]:
    """Fill ``{{var}}`` placeholders: text → text, chat messages → new messages (only ``content`` strings
    are filled; other keys kept). Non-string values are inserted as compact JSON. A missing variable
    raises KeyError naming it, or with ``strict=False`` stays visible as ``{{var}}`` (the SDK's way).
    """
    if isinstance(prompt, str):
        return _fill(prompt, variables, strict)
    out = []
    for message in prompt:
        message = dict(message)
        if isinstance(message.get("content"), str):
            message["content"] = _fill(message["content"], variables, strict)
        out.append(message)
    return out


def compile_messages(prompt: str | list[dict], variables: dict) -> list[dict[str, str]]:
    """The chat messages a model is sent (strict: a missing variable raises KeyError): a text prompt is
    one user message; of a chat message only ``role`` and ``content`` go."""
    compiled = compile_prompt(prompt, variables)
    if isinstance(compiled, str):
        return [{"role": "user", "content": compiled}]
    return [{"role": m["role"], "content": m["content"]} for m in compiled]


def prompt_variables(prompt: str | list[dict]) -> list[str]:
    """The variables a prompt uses, in order of first use."""
    texts = [prompt] if isinstance(prompt, str) else [m.get("content") for m in prompt]
    seen: dict[str, None] = {}
    for text in texts:
        if isinstance(text, str):
            seen.update(dict.fromkeys(VARIABLE.findall(text)))
    return list(seen)


# ------------------------------------------------------------------------------------------ validation

def _check_storable(value: Any, where: str) -> None:
    check_storable(value, where, PromptError)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PromptError("name: 1-200 characters: letters, digits, '_', '.', '-' (starting with a letter or digit)")
    return name


def check_label(label: Any, where: str = "label") -> str:
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise PromptError(f"{where}: 1-64 characters: lowercase letters, digits, '_', '.', '-'")
    if label == LATEST:
        raise PromptError(f"{where}: 'latest' always points at the newest version and cannot be moved")
    return label


def prompt_type(prompt: Any, declared: str | None = None) -> str:
    """``text`` or ``chat`` for a valid prompt (checked against ``declared`` when given)."""
    if declared not in (None, "text", "chat"):
        raise PromptError("type: must be 'text' or 'chat'")
    if isinstance(prompt, str):
        kind = "text"
        if len(prompt) > MAX_PROMPT_CHARS:
            raise PromptError(f"prompt: longer than {MAX_PROMPT_CHARS} characters")
    elif isinstance(prompt, list):
        kind = "chat"
        if not prompt or len(prompt) > MAX_MESSAGES:
            raise PromptError(f"prompt: a chat prompt needs 1-{MAX_MESSAGES} messages")
        total = 0
        for i, m in enumerate(prompt):
            if not isinstance(m, dict):
                raise PromptError(f"prompt[{i}]: must be an object with role and content")
            if not isinstance(m.get("role"), str) or not m["role"] or len(m["role"]) > 100:
                raise PromptError(f"prompt[{i}].role: a non-empty string is required")
            if not isinstance(m.get("content"), str):
                raise PromptError(f"prompt[{i}].content: a string is required")
            total += len(m["content"])
        if total > MAX_PROMPT_CHARS:
            raise PromptError(f"prompt: longer than {MAX_PROMPT_CHARS} characters")
    else:
        raise PromptError("prompt: must be a string (text) or a list of {role, content} messages (chat)")
    if declared is not None and declared != kind:
        raise PromptError(f"type: {declared!r} does not match the prompt, which is {kind}")
    _check_storable(prompt, "prompt")
    return kind


def _check_version_fields(config: Any, tags: Any, message: Any, labels: Any) -> tuple[dict, list[str], list[str]]:
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise PromptError("config: must be an object")
    _check_storable(config, "config")
    tags = list(tags or [])
    if len(tags) > MAX_TAGS or not all(isinstance(t, str) and 0 < len(t) <= 100 for t in tags):
        raise PromptError(f"tags: up to {MAX_TAGS} non-empty strings of at most 100 characters")
    _check_storable(tags, "tags")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE_CHARS:
        raise PromptError(f"message: a string of at most {MAX_MESSAGE_CHARS} characters")
    _check_storable(message, "message")
    labels = list(labels or [])
    if len(labels) > MAX_LABELS:
        raise PromptError(f"labels: at most {MAX_LABELS}")
    # ``latest`` is already true of a new version: accept it, store nothing.
    wanted = [check_label(label, f"labels[{i}]") for i, label in enumerate(labels) if label != LATEST]
    return config, sorted(set(tags), key=tags.index), sorted(set(wanted))


# -------------------------------------------------------------------------------------------- store

@asynccontextmanager
async def _connection(pg) -> AsyncIterator[psycopg.AsyncConnection]:
    if isinstance(pg, psycopg.AsyncConnection):
        yield pg
    else:
        async with pg.connection() as conn:
            yield conn


_VERSION_COLUMNS = """v.name, v.version, v.type, v.prompt, v.config, v.tags, v.message, v.author, v.created_at,
    ARRAY(SELECT l.label FROM prompt_labels l WHERE l.project_id = v.project_id AND l.name = v.name
          AND l.version = v.version ORDER BY l.label) AS labels, p.latest_version"""
_FROM = "FROM prompt_versions v JOIN prompts p ON p.project_id = v.project_id AND p.name = v.name"


def _version_out(row: tuple) -> dict[str, Any]:
    name, version, kind, prompt, config, tags, message, author, created_at, labels, latest = row
    labels = sorted([*labels, LATEST] if version == latest else labels)
    return {"name": name, "version": version, "type": kind, "prompt": prompt, "config": config, "tags": list(tags),
            "message": message, "author": author, "labels": labels, "created_at": created_at.isoformat()}


async def _set_label(conn, project_id: str, name: str, label: str, version: int | None, author: str | None) -> None:
    """Point ``label`` at ``version`` (None: remove it) and record the move. The caller's transaction
    holds the prompt row's lock, so moves of one prompt are serialised and the history is exact."""
    old = await (await conn.execute(
        "SELECT version FROM prompt_labels WHERE project_id = %s AND name = %s AND label = %s",
        (project_id, name, label))).fetchone()
    before = old[0] if old else None
    if before == version:
        return
    if version is None:
        await conn.execute("DELETE FROM prompt_labels WHERE project_id = %s AND name = %s AND label = %s",
                           (project_id, name, label))
    else:
        await conn.execute(
            "INSERT INTO prompt_labels (project_id, name, label, version, moved_by) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (project_id, name, label) DO UPDATE SET version = EXCLUDED.version, moved_at = now(), "
            "moved_by = EXCLUDED.moved_by",
            (project_id, name, label, version, author))
    await conn.execute(
        "INSERT INTO prompt_label_events (project_id, name, label, from_version, to_version, moved_by) "
        "VALUES (%s, %s, %s, %s, %s, %s)", (project_id, name, label, before, version, author))


async def _lock_prompt(conn, project_id: str, name: str) -> bool:
    """Lock the prompt's row for this transaction; False when there is no such prompt."""
    row = await (await conn.execute("SELECT 1 FROM prompts WHERE project_id = %s AND name = %s FOR UPDATE",
                                    (project_id, name))).fetchone()
    return row is not None


async def create_version(pg, project_id: str, name: str, *, prompt: str | list[dict], config: dict | None = None,
                         tags: list[str] | None = None, message: str = "", author: str | None = None,
                         labels: Iterable[str] = (), type: str | None = None) -> dict:
    """A new immutable version of ``name`` (the prompt is created with version 1), carrying ``labels``
    (moved to it in the same transaction). Returns the version dict."""
    check_name(name)
    kind = prompt_type(prompt, type)
    config, tags, wanted = _check_version_fields(config, tags, message, labels)
    async with _connection(pg) as conn, conn.transaction():
        # One statement takes the next number and locks the prompt row until commit.
        row = await (await conn.execute(
            "INSERT INTO prompts (project_id, name, latest_version) VALUES (%s, %s, 1) "
            "ON CONFLICT (project_id, name) DO UPDATE SET latest_version = prompts.latest_version + 1, "
            "updated_at = now() RETURNING latest_version", (project_id, name))).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row
        version = row[0]
        await conn.execute(
            "INSERT INTO prompt_versions (project_id, name, version, type, prompt, config, tags, message, author) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (project_id, name, version, kind, Jsonb(prompt), Jsonb(config), tags, message, author))
        for label in wanted:
            await _set_label(conn, project_id, name, label, version, author)
        return await _written(conn, project_id, name, version)


async def _get(conn, project_id: str, name: str, version_expr: str, params: tuple) -> dict | None:
    row = await (await conn.execute(
        f"SELECT {_VERSION_COLUMNS} {_FROM} WHERE v.project_id = %s AND v.name = %s AND v.version = {version_expr}",
        (project_id, name, *params))).fetchone()
    return _version_out(row) if row else None


async def _written(conn, project_id: str, name: str, version: int) -> dict:
    """A version this transaction just wrote or checked (so it exists)."""
    found = await _get(conn, project_id, name, "%s", (version,))
    assert found is not None
    return found


async def get_version(pg, project_id: str, name: str, *, version: int | None = None,
                      label: str | None = None) -> dict | None:
    """One version: by number, or by label (``latest`` = the newest); neither → label ``production``.
    None when the prompt, version or label does not exist."""
    check_name(name)
    if version is not None and label is not None:
        raise PromptError("version: give a version or a label, not both")
    async with _connection(pg) as conn:
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise PromptError("version: a positive integer")
            return await _get(conn, project_id, name, "%s", (version,))
        label = PRODUCTION if label is None else label
        if label == LATEST:
            return await _get(conn, project_id, name, "p.latest_version", ())
        if not isinstance(label, str) or not LABEL_PATTERN.match(label):
            raise PromptError("label: 1-64 characters: lowercase letters, digits, '_', '.', '-'")
        return await _get(conn, project_id, name,
                          "(SELECT l.version FROM prompt_labels l WHERE l.project_id = v.project_id "
                          "AND l.name = v.name AND l.label = %s)", (label,))


async def move_label(pg, project_id: str, name: str, label: str, version: int, *, author: str | None = None) -> dict:
    """Point ``label`` at ``version`` (atomically: one version per label per prompt). Returns that
    version's dict; PromptNotFound when the prompt or version does not exist."""
    check_name(name)
    check_label(label)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PromptError("version: a positive integer")
    async with _connection(pg) as conn, conn.transaction():
        if not await _lock_prompt(conn, project_id, name):
            raise PromptNotFound(f"name: no prompt called {name!r} in this project")
        exists = await (await conn.execute(
            "SELECT 1 FROM prompt_versions WHERE project_id = %s AND name = %s AND version = %s",
            (project_id, name, version))).fetchone()
        if not exists:
            raise PromptNotFound(f"version: prompt {name!r} has no version {version}")
        await _set_label(conn, project_id, name, label, version, author)
        return await _written(conn, project_id, name, version)


async def remove_label(pg, project_id: str, name: str, label: str, *, author: str | None = None) -> bool:
    """Take ``label`` off its prompt; False when it was not set."""
    check_name(name)
    check_label(label)
    async with _connection(pg) as conn, conn.transaction():
        if not await _lock_prompt(conn, project_id, name):
            return False
        was = await (await conn.execute(
            "SELECT 1 FROM prompt_labels WHERE project_id = %s AND name = %s AND label = %s",
            (project_id, name, label))).fetchone()
        if was:
            await _set_label(conn, project_id, name, label, None, author)
        return was is not None


async def label_history(pg, project_id: str, name: str, *, limit: int = 100) -> list[dict]:
    """The prompt's label moves, newest first: ``{label, from_version, to_version, moved_by, moved_at}``
    (``from_version`` None: newly set; ``to_version`` None: removed). PromptNotFound for no such prompt."""
    check_name(name)
    async with _connection(pg) as conn:
        exists = await (await conn.execute("SELECT 1 FROM prompts WHERE project_id = %s AND name = %s",
                                           (project_id, name))).fetchone()
        if not exists:
            raise PromptNotFound(f"name: no prompt called {name!r} in this project")
        rows = await (await conn.execute(
            "SELECT label, from_version, to_version, moved_by, moved_at FROM prompt_label_events "
            "WHERE project_id = %s AND name = %s ORDER BY id DESC LIMIT %s", (project_id, name, limit))).fetchall()
    return [{"label": label, "from_version": before, "to_version": after, "moved_by": by, "moved_at": at.isoformat()}
            for label, before, after, by, at in rows]


async def list_prompts(pg, project_id: str, *, limit: int = 1000) -> list[dict]:
    """Every prompt of the project: ``{name, latest_version, type, tags, labels: {label: version},
    versions, created_at, updated_at}``, most recently changed first."""
    async with _connection(pg) as conn:
        rows = await (await conn.execute(
            "SELECT p.name, p.latest_version, v.type, v.tags, p.created_at, p.updated_at, "
            "coalesce((SELECT jsonb_object_agg(l.label, l.version) FROM prompt_labels l "
            "          WHERE l.project_id = p.project_id AND l.name = p.name), '{}'::jsonb) "
            "FROM prompts p JOIN prompt_versions v ON v.project_id = p.project_id AND v.name = p.name "
            "AND v.version = p.latest_version WHERE p.project_id = %s ORDER BY p.updated_at DESC, p.name LIMIT %s",
            (project_id, limit))).fetchall()
    out = []
    for name, latest, kind, tags, created_at, updated_at, labels in rows:
        out.append({"name": name, "latest_version": latest, "versions": latest, "type": kind, "tags": list(tags),
                    "labels": {**dict(sorted(labels.items())), LATEST: latest},
                    "created_at": created_at.isoformat(), "updated_at": updated_at.isoformat()})
    return out


async def list_versions(pg, project_id: str, name: str) -> list[dict]:
    """Every version of ``name``, newest first; PromptNotFound when there is no such prompt."""
    check_name(name)
    async with _connection(pg) as conn:
        rows = await (await conn.execute(
            f"SELECT {_VERSION_COLUMNS} {_FROM} WHERE v.project_id = %s AND v.name = %s ORDER BY v.version DESC",
            (project_id, name))).fetchall()
    if not rows:
        raise PromptNotFound(f"name: no prompt called {name!r} in this project")
    return [_version_out(r) for r in rows]


# ---------------------------------------------------------------------------------------------- diff

def _unified(a: str, b: str, a_name: str, b_name: str) -> str:
    """A unified diff, one line per text line ('' when equal); a missing final newline is not a change."""
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), a_name, b_name, lineterm=""))
    return "\n".join(lines) + "\n" if lines else ""


def _render(prompt: str | list[dict]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"[{m.get('role')}]\n{m.get('content')}" for m in prompt)


def diff_versions(old: dict, new: dict) -> dict:
    """Unified diffs (difflib) from ``old`` to ``new``: ``prompt`` over the whole prompt (chat messages
    rendered as ``[role]`` blocks), ``messages`` per chat message position, ``config`` over its JSON."""
    a_name, b_name = f"{old['name']} v{old['version']}", f"{new['name']} v{new['version']}"
    messages = []
    if old["type"] == "chat" or new["type"] == "chat":
        a = old["prompt"] if isinstance(old["prompt"], list) else [{"role": "text", "content": old["prompt"]}]
        b = new["prompt"] if isinstance(new["prompt"], list) else [{"role": "text", "content": new["prompt"]}]
        for i in range(max(len(a), len(b))):
            ma, mb = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
            status = "added" if ma is None else "removed" if mb is None else "same" if ma == mb else "changed"
            messages.append({
                "index": i, "status": status,
                "from_role": ma and ma.get("role"), "to_role": mb and mb.get("role"),
                "diff": _unified(_render([ma]) if ma else "", _render([mb]) if mb else "",
                                 f"{a_name} [{i}]", f"{b_name} [{i}]"),
            })
    config_a = json.dumps(old["config"], indent=2, sort_keys=True, ensure_ascii=False)
    config_b = json.dumps(new["config"], indent=2, sort_keys=True, ensure_ascii=False)
    return {
        "name": new["name"], "from": old["version"], "to": new["version"],
        "from_type": old["type"], "to_type": new["type"],
        "prompt": _unified(_render(old["prompt"]), _render(new["prompt"]), a_name, b_name),
        "messages": messages,
        "config": _unified(config_a, config_b, f"{a_name} config", f"{b_name} config"),
        "tags": {"added": [t for t in new["tags"] if t not in old["tags"]],
                 "removed": [t for t in old["tags"] if t not in new["tags"]]},
    }
