"""LIKE matching without backtracking, and the deadline every step of a query run checks.

A query is attacker input: LIKE matches in at most text length times pattern length steps, and a run over its
time limit stops with QUERY_TIMEOUT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from runbook.localorg.model.soql_syntax import SoqlError


@dataclass(frozen=True)
class Deadline:
    """When a running query gives up, as Salesforce does with QUERY_TIMEOUT instead of running on."""

    expires: float

    def check(self) -> None:
        if time.monotonic() > self.expires:
            # [U] the code is Salesforce's; the message is as seen in client logs, not documented
            raise SoqlError("QUERY_TIMEOUT", "Your query request was running for too long.")


def _fold_text(text: str) -> str:
    """``text`` case-folded one character to one character, so ``_`` still stands for one character."""
    folded = text.casefold()
    if len(folded) == len(text):  # casefold never shortens a character: no character grew
        return folded
    return "".join(char if len(char.casefold()) > 1 else char.casefold() for char in text)


@dataclass(frozen=True)
class _Segment:
    """The part of a LIKE pattern between two ``%``: literal pieces at fixed offsets, ``_`` between them."""

    pieces: tuple[tuple[int, str], ...]
    length: int

    def fits_at(self, text: str, start: int) -> bool:
        return all(text.startswith(piece, start + offset) for offset, piece in self.pieces)

    def find(self, text: str, start: int, end: int, deadline: Deadline) -> int:
        """The first position from ``start`` where the segment fits ending by ``end``, or -1."""
        if not self.pieces:
            return start if start + self.length <= end else -1
        offset, anchor = self.pieces[0]
        stop = end - self.length + offset + len(anchor)
        found = text.find(anchor, start + offset, stop)
        while found != -1 and not self.fits_at(text, found - offset):
            deadline.check()
            found = text.find(anchor, found + 1, stop)
        return -1 if found == -1 else found - offset


@dataclass(frozen=True)
class LikePattern:
    """A LIKE pattern as segments between ``%``, matched without backtracking.

    Placing each middle segment at its first fit (left to right) is enough: a later fit never leaves
    more room for the segments after it. So a match costs at most text length times pattern length,
    where the regular expression it replaces (``.*`` per ``%``) backtracked exponentially in the
    number of ``%``: 12 of them took 16 s and held the GIL, stalling every other request.
    """

    segments: tuple[_Segment, ...]

    @classmethod
    def parse(cls, pattern: str) -> LikePattern:
        segments, pieces, literal, length = [], [], [], 0
        i = 0
        while i < len(pattern):
            char, i = pattern[i], i + 1
            if char == "\\" and i < len(pattern):  # \% and \_ (and any escaped character) are literal
                char, i = pattern[i], i + 1
            elif char in "%_":
                if literal:
                    pieces.append((length - len(literal), _fold_text("".join(literal))))
                    literal = []
                if char == "_":
                    length += 1
                    continue
                segments.append(_Segment(tuple(pieces), length))
                pieces, length = [], 0
                continue
            literal.append(char)
            length += 1
        if literal:
            pieces.append((length - len(literal), _fold_text("".join(literal))))
        segments.append(_Segment(tuple(pieces), length))
        return cls(tuple(segments))

    def matches(self, value: str, deadline: Deadline) -> bool:
        """Whether the whole of ``value`` matches, ignoring case."""
        text = _fold_text(value)
        first, last = self.segments[0], self.segments[-1]
        if len(self.segments) == 1:
            return len(text) == first.length and first.fits_at(text, 0)
        end = len(text) - last.length
        if end < first.length or not (first.fits_at(text, 0) and last.fits_at(text, end)):
            return False
        position = first.length
        for segment in self.segments[1:-1]:
            found = segment.find(text, position, end, deadline)
            if found == -1:
                return False
            position = found + segment.length
        return True
