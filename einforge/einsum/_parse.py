"""Lexer and recursive-descent parser for ``.cascade`` text.

The grammar, one statement per line (``#`` starts a comment; newlines inside brackets are ignored)::

    cascade  NAME ["description"]            name (hyphens allowed) and one-line description
    family   NAME                            the kind of algorithm (softmax-attention, normalization, ...)
    ranks    R [=size] ...                   ranks; a number is a default, an expression is derived
    param    W [=size] ...                   scalar parameters (window widths, ...); a default with a
                                             fraction (CAP=50.0) makes a real-valued one, used as a value
    input    T[r,...] ...                    input tensors, ranks given by their variables
    output   T ...                           optional; default: computed tensors nobody reads
    stop     cond [& cond]                   stopping condition of iterative ranks (also ``⋄ : cond``)
    workload R=field[*field/field] ...       how ranks take their sizes from a transformer workload
    density  T=P|0.25 ...                    the share of an input's entries a filter on it keeps
    T[idx[:cond], ...] = expr [:: op(v,...) ...]     an Extended Einsum

Index expressions are integer arithmetic over rank variables (lower case) and sizes (upper case):
``m1*M0+m0``, ``m1+1``, ``M1``. Conditions chain comparisons: ``p-W < m <= p``; in a subscript
``m1:m1=0`` pins the first iterate (an initialization).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ._errors import CascadeError, Source, Span
from ._ir import MAX_NESTING, Access, BinOp, Call, Compare, Const, Einsum, Num, RankDecl, Read, Sym, Var

__all__ = ["tokenize", "parse_statements", "ParsedCascade"]


@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER STRING OP NEWLINE EOF
    text: str
    line: int
    col: int

    def span(self, source: Source) -> Span:
        return Span(source, self.line, self.col, max(1, len(self.text)))


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\f]+)
  | (?P<comment>\#[^\n]*)
  | (?P<newline>\n)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"[^"\n]*")
  | (?P<op>::|<=|>=|==|!=|//|\u22c4|[\[\](),:=<>+\-*/&%])
    """,
    re.VERBOSE,
)


def tokenize(source: Source) -> list[Token]:
    """Split cascade text into tokens; newlines inside brackets are dropped."""
    tokens: list[Token] = []
    text = source.text
    pos, line, line_start, depth = 0, 1, 0, 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        col = pos - line_start + 1
        if m is None:
            ch = text[pos]
            raise CascadeError(
                f"unexpected character {ch!r}", Span(source, line, col, 1),
                "cascade text uses names, numbers, brackets and the operators + - * / : :: = < > & only",
            )
        kind = m.lastgroup
        tok = m.group()
        if kind == "newline":
            if depth == 0:
                tokens.append(Token("NEWLINE", "\\n", line, col))
            line += 1
            line_start = m.end()
        elif kind == "number":
            tokens.append(Token("NUMBER", tok, line, col))
        elif kind == "name":
            tokens.append(Token("NAME", tok, line, col))
        elif kind == "string":
            tokens.append(Token("STRING", tok, line, col))
        elif kind == "op":
            if tok in "([":
                depth += 1
            elif tok in ")]":
                depth = max(0, depth - 1)
            tokens.append(Token("OP", tok, line, col))
        pos = m.end()
    tokens.append(Token("NEWLINE", "\\n", line, pos - line_start + 1))
    tokens.append(Token("EOF", "", line, pos - line_start + 1))
    return tokens


@dataclass
class ParsedCascade:
    """Statements of a cascade file before semantic checks (see ``_cascade.build``)."""

    source: Source
    name: str | None = None
    description: str = ""
    family: str = ""
    densities: list = None   # (tensor token, parameter name or number token)
    ranks: list = None
    inputs: list = None
    outputs: list = None
    einsums: list = None
    stop: list = None
    reductions: dict = None  # einsum index -> list of (op, [Var...]) as written
    workload: list = None    # (rank token, expression over workload fields)

    def __post_init__(self):
        self.ranks = [] if self.ranks is None else self.ranks
        self.inputs = [] if self.inputs is None else self.inputs
        self.outputs = [] if self.outputs is None else self.outputs
        self.einsums = [] if self.einsums is None else self.einsums
        self.stop = [] if self.stop is None else self.stop
        self.reductions = {} if self.reductions is None else self.reductions
        self.workload = [] if self.workload is None else self.workload
        self.densities = [] if self.densities is None else self.densities


_KEYWORDS = {"cascade", "family", "ranks", "param", "input", "output", "stop", "workload", "density"}
_CMP = {"<", "<=", ">", ">=", "==", "!=", "="}


class _Parser:
    def __init__(self, source: Source):
        self.source = source
        self.toks = tokenize(source)
        self.i = 0
        self.depth = 0   # nesting of the expression being parsed

    def nest(self, extra: int = 0):
        """Refuse expressions nested deeper than MAX_NESTING (the checks and the executor recurse)."""
        if self.depth + extra > MAX_NESTING:
            raise self.error(
                f"this expression nests deeper than {MAX_NESTING} levels (parentheses, calls and chained operators)",
                hint="split it into several Einsums, each computing a part")

    # -- token helpers -------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def at(self, kind: str, text: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (text is None or t.text == text)

    def at_op(self, *texts: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text in texts

    def span(self, tok: Token | None = None) -> Span:
        return (tok or self.tok).span(self.source)

    def error(self, message: str, tok: Token | None = None, hint: str | None = None):
        t = tok or self.tok
        if t.kind in ("NEWLINE", "EOF"):
            message = message.replace("{found}", "the end of the line")
            return CascadeError(message, Span(self.source, t.line, t.col, 1), hint)
        message = message.replace("{found}", repr(t.text))
        return CascadeError(message, self.span(t), hint)

    def expect_op(self, text: str, what: str = "") -> Token:
        if not self.at_op(text):
            raise self.error(f"expected {text!r}{what} but found {{found}}")
        return self.next()

    def expect_name(self, what: str) -> Token:
        if self.tok.kind != "NAME":
            raise self.error(f"expected {what} but found {{found}}")
        return self.next()

    def end_of_statement(self):
        if not self.at("NEWLINE"):
            raise self.error("unexpected {found}: expected the end of the statement")
        self.next()

    # -- statements ----------------------------------------------------------------------------
    def parse(self) -> ParsedCascade:
        out = ParsedCascade(self.source)
        while not self.at("EOF"):
            if self.at("NEWLINE"):
                self.next()
                continue
            t = self.tok
            if t.kind == "NAME" and t.text in _KEYWORDS and not (self.peek().kind == "OP" and self.peek().text in "[="):
                getattr(self, f"_stmt_{t.text}")(out)
            elif t.kind == "OP" and t.text == "\u22c4":
                self.next()
                self.expect_op(":", " after '\u22c4'")
                out.stop.extend(self.conditions())
                self.end_of_statement()
            elif t.kind == "NAME":
                self._stmt_einsum(out)
            else:
                raise self.error(
                    "unexpected {found} at the start of a statement",
                    hint="a statement is a directive (cascade, family, ranks, param, input, output, stop, workload, density) "
                         "or an Einsum `T[...] = ...`",
                )
        return out

    def _stmt_cascade(self, out: ParsedCascade):
        kw = self.next()
        if out.name is not None:
            raise self.error("the cascade is already named", kw, "use one `cascade NAME` line per file")
        out.name = self._hyphenated("a cascade name after 'cascade'", "a cascade name")
        if self.at("STRING"):
            out.description = self.next().text[1:-1]
        self.end_of_statement()

    def _stmt_family(self, out: ParsedCascade):
        kw = self.next()
        if out.family:
            raise self.error("the family is already given", kw, "use one `family NAME` line per file")
        out.family = self._hyphenated("a family name after 'family' (e.g. softmax-attention)", "a family name")
        self.end_of_statement()

    def _hyphenated(self, what: str, noun: str) -> str:
        first = self.expect_name(what)
        parts = [first.text]
        end_col = first.col + len(first.text)
        # names may contain hyphens and digits (attention-1pass): glue adjacent tokens together
        while (self.tok.col == end_col and self.tok.line == first.line
               and (self.tok.kind in ("NAME", "NUMBER") or (self.tok.kind == "OP" and self.tok.text == "-"))):
            t = self.next()
            parts.append(t.text)
            end_col = t.col + len(t.text)
        if parts[-1] == "-":
            raise self.error(f"{noun} cannot end with '-'", self.toks[self.i - 1])
        return "".join(parts)

    def _decls(self, param: bool) -> list[RankDecl]:
        self.next()
        decls = []
        while not self.at("NEWLINE"):
            if self.at_op(","):
                self.next()
                continue
            t = self.expect_name("a rank name")
            if not t.text[0].isupper():
                raise self.error(
                    f"rank name {t.text!r} must start with an upper-case letter", t,
                    f"ranks are upper case ({t.text.upper()}); their variables are lower case ({t.text.lower()})",
                )
            size = None
            if self.at_op("="):
                self.next()
                if param and self.at("NUMBER") and not re.fullmatch(r"\d+", self.tok.text):
                    num = self.next()       # a real-valued parameter: a value, never a size
                    size = Num(float(num.text), self.span(num))
                elif (param and self.at_op("-") and self.toks[self.i + 1].kind == "NUMBER"
                      and not re.fullmatch(r"\d+", self.toks[self.i + 1].text)):
                    self.next()
                    num = self.next()
                    size = Num(-float(num.text), self.span(num))
                else:
                    size = self.index_expr()
            decls.append(RankDecl(t.text, size, param, self.span(t)))
        self.next()
        if not decls:
            raise self.error("expected at least one name", self.toks[self.i - 1])
        return decls

    def _stmt_ranks(self, out: ParsedCascade):
        out.ranks.extend(self._decls(False))

    def _stmt_param(self, out: ParsedCascade):
        out.ranks.extend(self._decls(True))

    def _items(self, parse_one, what: str) -> list:
        """A directive's comma- or space-separated items up to the end of the line (at least one)."""
        kw = self.next()
        items = []
        while not self.at("NEWLINE"):
            if self.at_op(","):
                self.next()
                continue
            items.append(parse_one())
        if not items:
            raise self.error(f"expected at least one {what} after '{kw.text}'", kw)
        self.next()
        return items

    def _input_decl(self):
        t = self.expect_name("an input tensor such as Q[e,p]")
        idx = []
        if self.at_op("["):
            self.next()
            while not self.at_op("]"):
                idx.append(self.expect_name("a rank variable"))
                if self.at_op(","):
                    self.next()
                elif not self.at_op("]"):
                    raise self.error("expected ',' or ']' but found {found}")
            self.next()
        return t, idx

    def _workload_item(self):
        t = self.expect_name("a rank name such as M in `workload M=keys`")
        self.expect_op("=", f" after {t.text} (write {t.text}=keys, {t.text}=batch*queries, ...)")
        return t, self.index_expr()

    def _density_item(self):
        t = self.expect_name("an input tensor such as BM in `density BM=KEEP`")
        self.expect_op("=", f" after {t.text} (write {t.text}=KEEP with a parameter, or {t.text}=0.25)")
        if not (self.at("NAME") or self.at("NUMBER")):
            raise self.error("expected a parameter or a number (the share of the tensor's entries a filter "
                             "on it keeps) but found {found}")
        return t, self.next()

    def _stmt_input(self, out: ParsedCascade):
        out.inputs.extend(self._items(self._input_decl, "input tensor"))

    def _stmt_output(self, out: ParsedCascade):
        out.outputs.extend(self._items(lambda: self.expect_name("an output tensor name"), "tensor"))

    def _stmt_workload(self, out: ParsedCascade):
        out.workload.extend(self._items(self._workload_item, "R=field"))

    def _stmt_density(self, out: ParsedCascade):
        out.densities.extend(self._items(self._density_item, "T=density"))

    def _stmt_stop(self, out: ParsedCascade):
        self.next()
        if self.at_op(":"):
            self.next()
        out.stop.extend(self.conditions())
        self.end_of_statement()

    def _stmt_einsum(self, out: ParsedCascade):
        name_tok = self.next()
        if not name_tok.text[0].isupper():
            raise self.error(
                f"tensor name {name_tok.text!r} must start with an upper-case letter", name_tok,
                "tensors and ranks are upper case; rank variables are lower case",
            )
        indices, filters = [], []
        if self.at_op("["):
            self.next()
            indices, filters = self.subscript()
        lhs = Access(name_tok.text, tuple(indices), self.span(name_tok))
        if not self.at_op("="):
            raise self.error(
                "expected '=' after the output of an Einsum but found {found}",
                hint="an Einsum reads `T[i,j] = expression`",
            )
        self.next()
        expr = self.expr()
        reductions = []
        if self.at_op("::"):
            self.next()
            while not self.at("NEWLINE"):
                op_tok = self.tok
                if op_tok.kind == "OP" and op_tok.text in ("+", "*"):
                    self.next()
                elif op_tok.kind == "NAME":
                    self.next()
                else:
                    raise self.error(
                        "expected a reduction such as max(m0) or +(e) but found {found}",
                    )
                self.expect_op("(", f" after reduction operator {op_tok.text!r}")
                vs = []
                while True:
                    v = self.expect_name("a rank variable to reduce")
                    vs.append(Var(v.text, self.span(v)))
                    if self.at_op(","):
                        self.next()
                        continue
                    break
                self.expect_op(")")
                reductions.append((op_tok.text, self.span(op_tok), vs))
        self.end_of_statement()
        out.reductions[len(out.einsums)] = reductions
        out.einsums.append(Einsum(lhs, expr, (), tuple(filters), self.span(name_tok)))

    # -- subscripts, conditions, index expressions ---------------------------------------------
    def subscript(self):
        """After '[': items separated by commas, each optionally followed by ': cond'; then ']'."""
        indices, filters = [], []
        if self.at_op(":"):
            self.next()
            filters.extend(self.conditions())
        while not self.at_op("]"):
            indices.append(self.index_expr())
            if self.at_op(":"):
                self.next()
                filters.extend(self.conditions())
            if self.at_op(","):
                self.next()
                if self.at_op("]"):
                    raise self.error("expected an index after ',' but found {found}")
            elif not self.at_op("]"):
                raise self.error("expected ',' or ']' in a subscript but found {found}")
        self.next()
        return indices, filters

    def conditions(self) -> list[Compare]:
        outer, self.in_condition = getattr(self, "in_condition", False), True
        try:
            out = self.chain()
            while self.at_op("&") or self.at("NAME", "and"):
                self.next()
                out.extend(self.chain())
        finally:
            self.in_condition = outer
        return out

    def chain(self) -> list[Compare]:
        start = self.tok
        left = self.index_expr()
        if not (self.tok.kind == "OP" and self.tok.text in _CMP):
            raise self.error("expected a comparison (<, <=, >, >=, =, !=) but found {found}")
        out = []
        while self.tok.kind == "OP" and self.tok.text in _CMP:
            op = self.next().text
            right = self.index_expr()
            out.append(Compare(left, "==" if op == "=" else op, right, self.span(start)))
            left = right
        return out

    def index_expr(self):
        self.depth += 1
        self.nest()
        left = self.index_term()
        n = 0
        while self.at_op("+", "-"):
            op = self.next()
            n += 1
            self.nest(n)
            right = self.index_term()
            left = BinOp(op.text, left, right, self.span(op))
        self.depth -= 1
        return left

    def index_term(self):
        left = self.index_atom()
        n = 0
        while self.at_op("*", "/", "//", "%"):
            op = self.next()
            n += 1
            self.nest(n)
            right = self.index_atom()
            left = BinOp(op.text, left, right, self.span(op))
        return left

    def index_atom(self):
        t = self.tok
        if t.kind == "NUMBER":
            if not re.fullmatch(r"\d+", t.text):
                if getattr(self, "in_condition", False):     # a filter may compare data with 0.5
                    self.next()
                    return Num(float(t.text), self.span(t))
                raise self.error(f"index {t.text} must be a whole number", t)
            if len(t.text) > 18:
                raise self.error(f"{t.text} is too large: sizes and indices are below 10**18", t)
            self.next()
            return Num(int(t.text), self.span(t))
        if t.kind == "NAME":
            self.next()
            if t.text[0].isupper():
                if getattr(self, "in_condition", False) and self.at_op("["):
                    return self._read(t)
                return Sym(t.text, self.span(t))
            return Var(t.text, self.span(t))
        if self.at_op("("):
            self.next()
            e = self.index_expr()
            self.expect_op(")")
            return e
        if self.at_op("-"):
            self.next()
            self.depth += 1
            self.nest()
            inner = self.index_atom()
            self.depth -= 1
            if isinstance(inner, Num):
                return Num(-inner.value, self.span(t))
            return BinOp("-", Num(0), inner, self.span(t))
        raise self.error("expected an index (a rank variable, a size or a number) but found {found}")

    def _read(self, t):
        """``T[i, ...]`` inside a condition: the tensor's value (data-dependent sparsity)."""
        self.next()
        outer, self.in_condition = self.in_condition, False      # its indices are plain indices
        try:
            idx = []
            while not self.at_op("]"):
                idx.append(self.index_expr())
                if self.at_op(","):
                    self.next()
                elif not self.at_op("]"):
                    raise self.error("expected ',' or ']' in a tensor read but found {found}")
        finally:
            self.in_condition = outer
        self.next()
        return Read(t.text, tuple(idx), self.span(t))

    # -- payload expressions ------------------------------------------------------------------
    def expr(self):
        self.depth += 1
        self.nest()
        left = self.term()
        n = 0
        while self.at_op("+", "-"):
            op = self.next()
            n += 1
            self.nest(n)
            right = self.term()
            left = Call(op.text, (left, right), self.span(op))
        self.depth -= 1
        return left

    def term(self):
        left = self.unary()
        n = 0
        while self.at_op("*", "/"):
            op = self.next()
            n += 1
            self.nest(n)
            right = self.unary()
            left = Call(op.text, (left, right), self.span(op))
        return left

    def unary(self):
        if self.at_op("-"):
            op = self.next()
            self.depth += 1
            self.nest()
            inner = self.unary()
            self.depth -= 1
            if isinstance(inner, Const):
                return Const(-inner.value, self.span(op))
            return Call("neg", (inner,), self.span(op))
        while self.at_op("+"):
            self.next()
        return self.primary()

    def primary(self):
        t = self.tok
        if t.kind == "NUMBER":
            self.next()
            return Const(float(t.text), self.span(t))
        if t.kind == "NAME":
            self.next()
            if t.text in ("inf", "Inf"):
                return Const(math.inf, self.span(t))
            if self.at_op("["):
                self.next()
                indices, filters = self.subscript()
                if filters:
                    # filters inside operand subscripts restrict the whole Einsum (EDGE semantics);
                    # they are carried to the Einsum by _cascade.build through this marker
                    return _FilteredAccess(Access(t.text, tuple(indices), self.span(t)), tuple(filters))
                return Access(t.text, tuple(indices), self.span(t))
            if self.at_op("("):
                self.next()
                args = []
                if not self.at_op(")"):
                    while True:
                        args.append(self.expr())
                        if self.at_op(","):
                            self.next()
                            continue
                        break
                self.expect_op(")", f" to close the call of {t.text}")
                return Call(t.text, tuple(args), self.span(t))
            return Access(t.text, (), self.span(t))
        if self.at_op("("):
            self.next()
            e = self.expr()
            self.expect_op(")")
            return e
        raise self.error("expected a value (a tensor, a number or a function call) but found {found}")


@dataclass(frozen=True)
class _FilteredAccess:
    """Parser-internal: an operand whose subscript carries a filter (``A[k:k<=i]``)."""

    access: Access
    filters: tuple

    def accesses(self):
        return [self.access]


def parse_statements(text: str, file: str = "<string>") -> ParsedCascade:
    """Parse cascade text into statements (no semantic checks)."""
    source = Source(text.lstrip("\ufeff"), file)
    return _Parser(source).parse()
