"""Every config key with its value and meaning, read from lthray/config.py's own comments: the comment
beside (or the comment lines above) a field is that key's documentation, in one place, and `lthray config`
prints it. Parsed with the standard library (ast for the fields, tokenize for the comments)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import tokenize
from pathlib import Path
from typing import Any, NoReturn

from lthray import config


def _comments(src: str) -> tuple[dict[int, str], set[int]]:
    """Line -> comment text, and the lines that hold nothing but a comment."""
    text, alone = {}, set()
    lines = src.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            text[row] = tok.string.lstrip("#").strip()
            if lines[row - 1].lstrip().startswith("#"):
                alone.add(row)
    return text, alone


def field_docs() -> dict[str, str]:
    """'section.key' -> its documentation (empty where config.py says nothing)."""
    src = Path(config.__file__).read_text()
    text, alone = _comments(src)
    by_class: dict[str, dict[str, str]] = {}
    for node in ast.parse(src).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                above, row = [], item.lineno - 1
                while row in alone:  # the comment lines right above the field
                    above.insert(0, text[row])
                    row -= 1
                trailing = text[item.lineno] if item.lineno in text and item.lineno not in alone else ""
                by_class.setdefault(node.name, {})[item.target.id] = " ".join([*above, trailing]).strip()
    out = {}
    for section in dataclasses.fields(config.TrialConfig):
        cls = section.type if isinstance(section.type, str) else section.type.__name__
        for key, doc in by_class.get(cls, {}).items():
            out[f"{section.name}.{key}"] = doc
        if cls not in by_class:  # a plain field of TrialConfig (seed)
            out[section.name] = by_class.get("TrialConfig", {}).get(section.name, "")
    return out


def table(flat: dict[str, Any], varied: dict[str, list[Any]] | None = None) -> list[tuple[str, str, str]]:
    """(key, value, meaning) of every key of a full flat config; a key the preset varies shows its choices."""
    docs, varied = field_docs(), varied or {}
    return [(k, "one of " + ", ".join(map(str, varied[k])) if k in varied else repr(v), docs.get(k, ""))
            for k, v in flat.items()]


class OneLineParser(argparse.ArgumentParser):
    """argparse whose bad flag is one line on stderr ('error: ...') and exit 2, not a usage block: every
    lthray command refuses bad input that way."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message.removeprefix('argument ')}\n")
