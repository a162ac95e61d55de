"""The one exception type of the cascade language, and source positions for it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CascadeError", "Span", "Source"]


@dataclass(frozen=True)
class Source:
    """The text a cascade was read from, kept so that errors can quote it."""

    text: str
    file: str = "<string>"

    def line(self, number: int) -> str:
        lines = self.text.splitlines()
        if 1 <= number <= len(lines):
            return lines[number - 1]
        return ""


@dataclass(frozen=True)
class Span:
    """Where a piece of the IR came from: 1-based line and column, and a length for the caret."""

    source: Source
    line: int
    col: int
    length: int = 1

    def __repr__(self) -> str:  # keep IR reprs short
        return f"Span({self.source.file}:{self.line}:{self.col})"


class CascadeError(Exception):
    """A cascade that cannot be read, checked or run.

    The message names the file, line and column when the problem comes from text, quotes the
    line with a caret under the offending token, and says what to do about it.
    """

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        self.message = message
        self.span = span
        self.hint = hint
        super().__init__(self._render())

    @property
    def file(self) -> str | None:
        return self.span.source.file if self.span else None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def col(self) -> int | None:
        return self.span.col if self.span else None

    def _render(self) -> str:
        out = []
        if self.span is not None:
            s = self.span
            out.append(f"{s.source.file}:{s.line}:{s.col}: {self.message}")
            text = s.source.line(s.line)
            if text:
                out.append("    " + text)
                out.append("    " + " " * (s.col - 1) + "^" * max(1, s.length))
        else:
            out.append(self.message)
        if self.hint:
            out.append(self.hint)
        return "\n".join(out)
