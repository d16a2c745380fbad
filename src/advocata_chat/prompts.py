"""Prompt files: YAML in `prompts/`, turned into ChatPromptTemplates.

A file lists `messages`; each is `{role, content}`, `{placeholder: name}` for a list of
messages (the history), or `{include: other}` to inline another file's messages. The
declared `variables` must match what the template really uses, so a typo fails at load.

`PromptSet` holds the loaded prompts for the app. In development it reloads edited files
on the next lookup and keeps the last good version of a file whose edit is broken.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

log = logging.getLogger(__name__)


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class Prompt:
    name: str
    template: ChatPromptTemplate
    variables: frozenset[str]
    sha256: str  # of the file and its includes, to trace an answer to a prompt version
    description: str = ""


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
    description = str(data.get("description") or "")
    return Prompt(path.stem, template, frozenset(used), digest, description)


def load_prompts(directory: Path) -> dict[str, Prompt]:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise PromptError(f"no prompt files in {directory}")
    return {p.stem: load_prompt(p) for p in files}


def check_variables(prompt: Prompt, expected: frozenset[str] | None) -> Prompt:
    """Refuse a prompt whose variables differ from what the code fills in."""
    if expected is not None and prompt.variables != expected:
        missing, extra = sorted(expected - prompt.variables), sorted(prompt.variables - expected)
        parts = [f"lacks {missing}" if missing else "", f"adds {extra}" if extra else ""]
        raise PromptError(
            f"{prompt.name}.yaml: the program fills the variables {sorted(expected)}; "
            f"this version {' and '.join(p for p in parts if p)}"
        )
    return prompt


@dataclass(frozen=True)
class PromptStatus:
    name: str
    sha256: str | None  # None: the file never loaded (a new file with an error)
    description: str
    variables: list[str]
    loaded_at: datetime | None  # when the version in use was loaded
    error: str | None  # why the file on disk is not the version in use


class PromptSet(Mapping[str, Prompt]):
    """The app's prompts, read like a dict: `prompts["chat"].template`.

    With `live` (development), each lookup first compares the folder's file stamps with the
    last lookup, a few `stat` calls, and on a change reloads every file (includes make the
    files depend on each other). A file that fails to load, or whose variables differ from
    the ones loaded at start (the code fills those), keeps its last good version in use;
    the error is logged once and kept for `status()`. Without `live`, files load once.
    """

    def __init__(
        self,
        directory: Path,
        *,
        live: bool = False,
        expected: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.directory = directory
        self.live = live
        self._lock = threading.Lock()
        prompts = load_prompts(directory)  # a broken file at start is fatal, in any mode
        for name, prompt in prompts.items():
            check_variables(prompt, (expected or {}).get(name))
        if missing := sorted(set(expected or {}) - set(prompts)):
            raise PromptError(f"{directory} has no {', '.join(f'{n}.yaml' for n in missing)}")
        self._prompts = prompts
        self._expected = {n: p.variables for n, p in prompts.items()}
        now = datetime.now(UTC)
        self._loaded_at = dict.fromkeys(prompts, now)
        self._errors: dict[str, str] = {}
        self._stamp = self._scan()

    def _scan(self) -> tuple:
        stamps = []
        for path in sorted(self.directory.glob("*.yaml")):
            try:
                st = path.stat()
            except OSError:  # removed between glob and stat
                continue
            stamps.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def refresh(self) -> None:
        """Reload changed files (live mode only); cheap when nothing changed."""
        if not self.live:
            return
        with self._lock:
            stamp = self._scan()
            if stamp == self._stamp:
                return
            self._stamp = stamp
            names = {p.stem for p in self.directory.glob("*.yaml")} | set(self._prompts)
            for gone in set(self._errors) - names:  # a broken new file was deleted
                del self._errors[gone]
            for name in sorted(names):
                self._reload(name)

    def _reload(self, name: str) -> None:
        path = self.directory / f"{name}.yaml"
        old = self._prompts.get(name)
        try:
            if not path.exists():
                raise PromptError(f"{path.name}: the file was removed")
            new = check_variables(load_prompt(path), self._expected.get(name))
        except PromptError as e:
            if self._errors.get(name) != str(e):
                kept = f"the last good version ({old.sha256[:12]}) stays in use" if old else ""
                log.error("prompt %s not reloaded: %s; %s", name, e, kept or "not loaded")
            self._errors[name] = str(e)
            return
        recovered = self._errors.pop(name, None) is not None
        if old is not None and old.sha256 == new.sha256:
            if recovered:
                log.info("prompt %s is valid again, unchanged (%s)", name, new.sha256[:12])
            return
        self._prompts[name] = new
        self._loaded_at[name] = datetime.now(UTC)
        self._expected.setdefault(name, new.variables)
        was = old.sha256[:12] if old else "new file"
        log.info("prompt %s reloaded: %s -> %s", name, was, new.sha256[:12])

    def status(self) -> list[PromptStatus]:
        self.refresh()
        with self._lock:
            names = sorted(set(self._prompts) | set(self._errors))
            return [
                PromptStatus(
                    name=name,
                    sha256=p.sha256 if (p := self._prompts.get(name)) else None,
                    description=p.description if p else "",
                    variables=sorted(p.variables) if p else [],
                    loaded_at=self._loaded_at.get(name),
                    error=self._errors.get(name),
                )
                for name in names
            ]

    def __getitem__(self, name: str) -> Prompt:
        self.refresh()
        return self._prompts[name]

    def __iter__(self) -> Iterator[str]:
        self.refresh()
        return iter(dict(self._prompts))

    def __len__(self) -> int:
        return len(self._prompts)
