"""A small parser of the Prometheus text exposition format (version 0.0.4), for node /metrics.

Only what load-aware routing needs: sample lines become `Sample(name, labels, value)`; `# HELP`,
`# TYPE` and other comments are skipped; timestamps are ignored. Malformed lines are skipped
rather than failing the scrape (a node's exporter may carry anything), so the result is always
a best effort. Histograms stay as their `_bucket`/`_sum`/`_count` series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Sample", "parse_metrics_text"]

_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_SPECIAL_VALUES = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: `name{labels} value`."""

    name: str
    labels: dict[str, str]
    value: float


def parse_metrics_text(text: str) -> list[Sample]:
    """Every well-formed sample of a /metrics answer, in order."""
    return list(_samples(text.splitlines()))


def _samples(lines: Iterable[str]) -> Iterator[Sample]:
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            yield _sample(line)
        except ValueError:
            continue


def _sample(line: str) -> Sample:
    brace = line.find("{")
    space = _first_space(line)
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        labels, end = _labels(line, brace + 1)
        rest = line[end:]
    else:
        if space == -1:
            raise ValueError("no value")
        name, labels, rest = line[:space], {}, line[space:]
    if not name:
        raise ValueError("no name")
    fields = rest.split()
    if not fields or len(fields) > 2:
        raise ValueError("bad value")
    return Sample(name, labels, _value(fields[0]))


def _first_space(line: str) -> int:
    positions = [p for p in (line.find(" "), line.find("\t")) if p != -1]
    return min(positions) if positions else -1


def _labels(line: str, position: int) -> tuple[dict[str, str], int]:
    """Labels from just after `{`; returns them and the index after the closing `}`."""
    labels: dict[str, str] = {}
    n = len(line)
    while True:
        while position < n and line[position] in " \t,":
            position += 1
        if position >= n:
            raise ValueError("unterminated labels")
        if line[position] == "}":
            return labels, position + 1
        equals = line.find("=", position)
        if equals == -1 or equals + 1 >= n or line[equals + 1] != '"':
            raise ValueError("bad label")
        key = line[position:equals].strip()
        value, position = _quoted(line, equals + 2)
        labels[key] = value


def _quoted(line: str, position: int) -> tuple[str, int]:
    """A label value from just after its opening quote; returns it and the index after the closing one."""
    chars: list[str] = []
    n = len(line)
    while position < n:
        char = line[position]
        if char == '"':
            return "".join(chars), position + 1
        if char == "\\" and position + 1 < n:
            following = line[position + 1]
            chars.append(_ESCAPES.get(following, "\\" + following))
            position += 2
            continue
        chars.append(char)
        position += 1
    raise ValueError("unterminated label value")


def _value(text: str) -> float:
    special = _SPECIAL_VALUES.get(text)
    return special if special is not None else float(text)
