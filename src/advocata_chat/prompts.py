"""Prompt files: YAML in `prompts/`, turned into ChatPromptTemplates.

A file lists `messages`; each is `{role, content}`, `{placeholder: name}` for a list of
messages (the history), or `{include: other}` to inline another file's messages. The
declared `variables` must match what the template really uses, so a typo fails at load.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class Prompt:
    name: str
    template: ChatPromptTemplate
    variables: frozenset[str]
    sha256: str  # of the file and its includes, to trace an answer to a prompt version


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PromptError(f"{path.name}: cannot read prompt: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise PromptError(f"{path.name}: a prompt file needs a 'messages' list")
    return data


def _parts(path: Path, seen: tuple[str, ...] = ()) -> tuple[list, list[bytes]]:
    if path.stem in seen:
        raise PromptError(f"{path.name}: include cycle {' -> '.join((*seen, path.stem))}")
    data = _read(path)
    parts: list = []
    blobs = [path.read_bytes()]
    for i, m in enumerate(data["messages"]):
        if not isinstance(m, dict):
            raise PromptError(f"{path.name}: message #{i + 1} must be a mapping")
        if "include" in m:
            sub, sub_blobs = _parts(path.with_name(f"{m['include']}.yaml"), (*seen, path.stem))
            parts += sub
            blobs += sub_blobs
        elif "placeholder" in m:
            parts.append(MessagesPlaceholder(m["placeholder"], optional=bool(m.get("optional"))))
        elif m.get("role") in ("system", "human", "ai") and isinstance(m.get("content"), str):
            parts.append((m["role"], m["content"]))
        else:
            raise PromptError(
                f"{path.name}: message #{i + 1} needs role (system/human/ai) and content, "
                "or placeholder, or include"
            )
    return parts, blobs


def load_prompt(path: Path) -> Prompt:
    data = _read(path)
    parts, blobs = _parts(path)
    try:
        template = ChatPromptTemplate.from_messages(parts)
    except (ValueError, KeyError) as e:
        raise PromptError(f"{path.name}: {e}") from e
    used = set(template.input_variables) | set(template.optional_variables)
    declared = set(data.get("variables") or [])
    if used != declared:
        raise PromptError(
            f"{path.name}: declared variables {sorted(declared)} but the text uses {sorted(used)}"
        )
    digest = hashlib.sha256(b"\0".join(blobs)).hexdigest()
    return Prompt(path.stem, template, frozenset(used), digest)


def load_prompts(directory: Path) -> dict[str, Prompt]:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise PromptError(f"no prompt files in {directory}")
    return {p.stem: load_prompt(p) for p in files}
