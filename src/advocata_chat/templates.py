"""Conversation templates: YAML files in `prompts/templates/`, edited by prompt engineers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from advocata_chat.prompts import PromptError

_ID = re.compile(r"^[a-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Template:
    id: str
    title: str
    description: str
    system_addition: str
    suggested_questions: list[str]
    facts_to_collect: list[str]


def _strings(data: dict, key: str, name: str) -> list[str]:
    value = data.get(key)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise PromptError(f"{name}: '{key}' must be a non-empty list of strings")
    return [v.strip() for v in value]


def load_template(path: Path) -> Template:
    name = path.name
    if not _ID.match(path.stem):
        raise PromptError(f"{name}: the file name must be lowercase letters, digits, _ or -")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PromptError(f"{name}: cannot read template: {e}") from e
    if not isinstance(data, dict):
        raise PromptError(f"{name}: a template is a mapping of fields")
    text = {}
    for key in ("title", "description", "system_addition"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise PromptError(f"{name}: '{key}' must be a non-empty string")
        text[key] = value.strip()
    unknown = set(data) - {*text, "suggested_questions", "facts_to_collect"}
    if unknown:
        raise PromptError(f"{name}: unknown fields {sorted(unknown)}")
    return Template(
        id=path.stem,
        **text,
        suggested_questions=_strings(data, "suggested_questions", name),
        facts_to_collect=_strings(data, "facts_to_collect", name),
    )


def load_templates(directory: Path) -> dict[str, Template]:
    if not directory.is_dir():
        return {}
    return {p.stem: load_template(p) for p in sorted(directory.glob("*.yaml"))}
