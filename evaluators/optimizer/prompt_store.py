"""The optimiser's one door to the prompt store (``core.prompts``): read the base version, save an
accepted candidate as a new unlabelled version, and turn a prompt plus a dataset item into the messages
the target is sent."""

from __future__ import annotations

from typing import Any

from core import prompts

AUTHOR = "evalforge-optimizer"


async def get_version(pg, project_id: str, name: str, *, version: int | None = None,
                      label: str | None = None) -> dict[str, Any] | None:
    return await prompts.get_version(pg, project_id, name, version=version, label=label)


async def create_unlabelled_version(pg, project_id: str, name: str, base: dict[str, Any], prompt: Any,
                                    message: str) -> dict[str, Any]:
    """A new version with the base's config and tags and no label: a person promotes it."""
    return await prompts.create_version(pg, project_id, name, prompt=prompt, config=base.get("config"),
                                        tags=base.get("tags"), message=message, author=AUTHOR,
                                        labels=())


async def version_made_by(pg, project_id: str, name: str, job_id: str) -> dict[str, Any] | None:
    """The version an earlier run of this job created (its message names the job), if any: a resumed
    job must not save its prompt twice."""
    return next((v for v in await prompts.list_versions(pg, project_id, name)
                 if v.get("author") == AUTHOR and job_id in (v.get("message") or "")), None)


def variables(prompt: Any) -> set[str]:
    """The ``{{variables}}`` a prompt (text or chat messages) uses."""
    return set(prompts.prompt_variables(prompt))


def item_variables(item: dict[str, Any]) -> dict[str, Any]:
    """A dataset item's input as prompt variables: its fields when it is an object, else ``input``.
    Never the expected output: the prompt must not see the answer."""
    value = item.get("input")
    return dict(value) if isinstance(value, dict) else {"input": value}


def messages_for(prompt: Any, item: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages the target gets for ``item``: a text prompt is one user message."""
    return prompts.compile_messages(prompt, item_variables(item))
