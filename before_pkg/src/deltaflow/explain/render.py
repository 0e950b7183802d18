"""The trace rendered as text, Markdown or LaTeX, and the table of mean |delta|."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np

from deltaflow.errors import ConfigError
from deltaflow.explain.counting import op_counts
from deltaflow.explain.trace import StepTrace

if TYPE_CHECKING:
    from deltaflow.training.loop import History


# ------------------------------------------------------------------------ rendering
# g'(z) written from a = g(z), as the engine computes it ({a} is a^(l)).
FORMATS = ("text", "markdown", "latex")

_GPRIME_TEXT = {
    "sigmoid": "{a} * (1 - {a})",
    "tanh": "1 - {a} * {a}",
    "relu": "[{a} > 0]",
    "leaky_relu": "1 where {a} > 0, else 0.01",
    "identity": "1",
}
_GPRIME_TEX = {
    "sigmoid": r"{a} \odot (1 - {a})",
    "tanh": r"1 - {a} \odot {a}",
    "relu": r"[{a} > 0]",
    "leaky_relu": r"1 \text{{ where }} {a} > 0 \text{{, else }} 0.01",
    "identity": "1",
}
_COST_TEXT = {
    "squared_error": ["C_0", "sum_j (a_j^({L}) - y_j)^2"],
    "cross_entropy": ["C_0", "-sum_j y_j log a_j^({L})"],
    "binary_cross_entropy": [
        "C_0",
        "-sum_j [y_j log a_j^({L}) + (1 - y_j) log(1 - a_j^({L}))]",
    ],
}
_COST_TEX = {
    "squared_error": ["C_0", r"\sum_j (a_j^{{({L})}} - y_j)^2"],
    "cross_entropy": ["C_0", r"-\sum_j y_j \log a_j^{{({L})}}"],
    "binary_cross_entropy": [
        "C_0",
        r"-\sum_j \left[y_j \log a_j^{{({L})}} + (1 - y_j) \log(1 - a_j^{{({L})}})\right]",
    ],
}
_GREEK_TEX = {"Theta": r"\Theta", "delta": r"\delta", "alpha": r"\alpha", "eps": r"\varepsilon"}
_G_TEX = {
    "sigmoid": r"\sigma",
    "tanh": r"\tanh",
    "relu": r"\mathrm{relu}",
    "identity": r"\mathrm{id}",
    "softmax": r"\mathrm{softmax}",
}


class _Writer:
    """Plain text. Prose strings embed mathematics through :meth:`m`; the methods that
    return mathematics (symbols, numbers, vectors) return it in the writer's notation.
    The Markdown and LaTeX writers override what differs."""

    mul = " * "  # elementwise product
    dot = " "  # matrix product
    times = " * "  # product of two numbers
    latex = False

    def __init__(self, digits: int, max_entries: int) -> None:
        self.digits = digits
        self.max_entries = max_entries
        self.out: list[str] = []

    # structure; arguments are prose
    def title(self, text: str) -> None:
        self.out += [text, "=" * len(text), ""]

    def section(self, text: str) -> None:
        self.out += [text, "-" * len(text), ""]

    def para(self, text: str) -> None:
        self.out += textwrap.wrap(text, 88, break_long_words=False, break_on_hyphens=False)
        self.out.append("")

    def eqs(self, rows: list[list[str]], rel: str = "=") -> None:
        """Display equations ``lhs rel rhs1 = rhs2 ...`` (mathematics), aligned on ``rel``."""
        width = max(len(r[0]) for r in rows)
        for r in rows:
            # only the last part (a vector or a matrix) may span several lines
            head = f"  {r[0]:>{width}} {rel} " + "".join(p + " = " for p in r[1:-1])
            lines = r[-1].split("\n")
            self.out.append(head + lines[0])
            self.out += [" " * len(head) + line for line in lines[1:]]
        self.out.append("")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(c) for c in col) for col in zip(header, *rows)]
        line = "  ".join(f"{h:>{w}}" for h, w in zip(header, widths))
        self.out += ["  " + line, "  " + "-" * len(line)]
        self.out += ["  " + "  ".join(f"{c:>{w}}" for c, w in zip(r, widths)) for r in rows]
        self.out.append("")

    def finish(self) -> str:
        while self.out and not self.out[-1]:
            self.out.pop()
        return "\n".join(self.out) + "\n"

    # prose pieces
    def m(self, math: str) -> str:
        """Mathematics inside prose."""
        return math

    def tn(self, x: float) -> str:
        """A number inside prose or a table."""
        return self.m(self.num(x))

    def word(self, text: str) -> str:
        """A name such as an activation or a cost, in prose or mathematics."""
        return text

    # mathematics
    def s(self, name: str, l: int | str | None = None, idx: str | None = None) -> str:
        """A symbol such as ``delta_k^(l)``."""
        sub = f"_{idx}" if idx is not None else ""
        sup = f"^({l})" if l is not None else ""
        return f"{name}{sub}{sup}"

    def d(self, num: str, den: str) -> str:
        """The partial derivative of ``num`` by ``den``."""
        return f"d{num}/d{den}"

    def gp(self, l: int | str, idx: str | None = None) -> str:
        """``g'(z^(l))``."""
        return f"g'({self.s('z', l, idx)})"

    def g(self, name: str, arg: str) -> str:
        return f"{name}({arg})"

    def gprime_from_a(self, name: str, l: int) -> str | None:
        form = _GPRIME_TEXT.get(name)
        return form.format(a=self.s("a", l)) if form else None

    def cost_formula(self, name: str, L: int) -> list[str]:
        return [p.format(L=L) for p in _COST_TEXT.get(name, ["C_0"])]

    def sum_over(self, index: str) -> str:
        return f"sum_{index} "

    def mean_cost(self) -> str:
        return "C = (1/m) sum_i C_i = C_0"

    def paren(self, terms: list[str]) -> str:
        return "(" + " + ".join(terms) + ")"

    def absval(self, math: str) -> str:
        return f"|{math}|"

    def num(self, x: float) -> str:
        text = f"{float(x):.{self.digits}g}"
        return "0" if text == "-0" else text

    def factor(self, x: float) -> str:
        """A number as a factor of a product: in parentheses when negative."""
        text = self.num(x)
        return f"({text})" if text.startswith("-") else text

    def small(self, x: float) -> str:
        """A difference or an error, to two significant digits."""
        return f"{float(x):.1e}"

    def vec(self, v: np.ndarray) -> str:
        return "[" + ", ".join(self._items(v, "...")) + "]"

    def mat(self, M: np.ndarray) -> str:
        if M.size > self.max_entries:
            return f"({M.shape[0]} x {M.shape[1]} matrix: more than {self.max_entries} entries)"
        cells = [[self.num(x) for x in row] for row in M]
        width = max(len(c) for row in cells for c in row)
        return "\n".join("[ " + "  ".join(f"{c:>{width}}" for c in row) + " ]" for row in cells)

    def _items(self, v: np.ndarray, ellipsis: str) -> list[str]:
        items = [self.num(x) for x in v]
        if len(items) > self.max_entries:
            half = min(self.max_entries // 2, 8)
            items = items[:half] + [ellipsis] + items[-half:]
        return items


class _MarkdownWriter(_Writer):
    def title(self, text: str) -> None:
        self.out += [f"# {text}", ""]

    def section(self, text: str) -> None:
        self.out += [f"## {text}", ""]

    def para(self, text: str) -> None:
        self.out += [text, ""]

    def eqs(self, rows: list[list[str]], rel: str = "=") -> None:
        self.out.append("```text")
        super().eqs(rows, rel)
        self.out[-1] = "```"
        self.out.append("")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.out.append("| " + " | ".join(header) + " |")
        self.out.append("|" + "|".join(" ---: " for _ in header) + "|")
        self.out += ["| " + " | ".join(r) + " |" for r in rows]
        self.out.append("")

    def m(self, math: str) -> str:
        return f"`{math}`"

    def tn(self, x: float) -> str:
        return self.num(x)


class _LatexWriter(_Writer):
    mul = r" \odot "
    dot = " "
    times = r" \cdot "
    latex = True

    def title(self, text: str) -> None:
        self.out += [
            r"\documentclass{article}",
            r"\usepackage{amsmath}",
            r"\usepackage[margin=2cm]{geometry}",
            r"\setcounter{MaxMatrixCols}{64}",
            r"\begin{document}",
            "",
            r"\section*{" + text + "}",
            "",
        ]

    def section(self, text: str) -> None:
        self.out += [r"\subsection*{" + text + "}", ""]

    def para(self, text: str) -> None:
        self.out += [text, ""]

    def eqs(self, rows: list[list[str]], rel: str = "=") -> None:
        lines = [f"{r[0]} &{rel} " + " = ".join(r[1:]) for r in rows]
        self.out += [r"\begin{align*}", " \\\\\n".join(lines), r"\end{align*}", ""]

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.out += [r"\begin{center}", r"\begin{tabular}{" + "r" * len(header) + "}"]
        self.out.append(" & ".join(header) + r" \\ \hline")
        self.out += [" & ".join(r) + r" \\" for r in rows]
        self.out += [r"\end{tabular}", r"\end{center}", ""]

    def finish(self) -> str:
        self.out.append(r"\end{document}")
        return super().finish()

    def m(self, math: str) -> str:
        return f"${math}$"

    def word(self, text: str) -> str:
        return r"\texttt{" + text.replace("_", r"\_") + "}"

    def s(self, name: str, l: int | str | None = None, idx: str | None = None) -> str:
        base = _GREEK_TEX.get(name, name)
        sub = f"_{{{idx}}}" if idx is not None else ""
        sup = f"^{{({l})}}" if l is not None else ""
        return f"{base}{sub}{sup}"

    def d(self, num: str, den: str) -> str:
        return rf"\frac{{\partial {num}}}{{\partial {den}}}"

    def g(self, name: str, arg: str) -> str:
        return rf"{_G_TEX.get(name, self.word(name))}({arg})"

    def gprime_from_a(self, name: str, l: int) -> str | None:
        form = _GPRIME_TEX.get(name)
        return form.format(a=self.s("a", l)) if form else None

    def cost_formula(self, name: str, L: int) -> list[str]:
        return [p.format(L=L) for p in _COST_TEX.get(name, ["C_0"])]

    def sum_over(self, index: str) -> str:
        return rf"\sum_{{{index}}} "

    def mean_cost(self) -> str:
        return r"C = \frac{1}{m} \sum_i C_i = C_0"

    def paren(self, terms: list[str]) -> str:
        return r"\left(" + " + ".join(terms) + r"\right)"

    def absval(self, math: str) -> str:
        return rf"\lvert {math} \rvert"

    def num(self, x: float) -> str:
        return _tex_exponent(super().num(x))

    def small(self, x: float) -> str:
        return _tex_exponent(super().small(x))

    def vec(self, v: np.ndarray) -> str:
        return r"\begin{bmatrix} " + " & ".join(self._items(v, r"\cdots")) + r" \end{bmatrix}"

    def mat(self, M: np.ndarray) -> str:
        if M.size > self.max_entries:
            return rf"\text{{({M.shape[0]} $\times$ {M.shape[1]} matrix, not shown)}}"
        rows = [" & ".join(self.num(x) for x in row) for row in M]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"


def _tex_exponent(text: str) -> str:
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}"


_WRITERS = {"text": _Writer, "markdown": _MarkdownWriter, "latex": _LatexWriter}


def render(trace: StepTrace, fmt: str = "text", *, digits: int = 4, max_entries: int = 40) -> str:
    """The trace as a worked example: readable text, Markdown or a LaTeX document.

    Parameters
    ----------
    trace : StepTrace
        From :func:`trace_step`.
    fmt : {"text", "markdown", "latex"}
        LaTeX is a complete ``article`` document using ``amsmath``.
    digits : int
        Significant digits of every number shown (``f"{x:.{digits}g}"``).
    max_entries : int
        Vectors, matrices and per-layer gradient tables with more entries than this
        are abbreviated (the comparisons still cover every entry).

    Returns
    -------
    str
    """
    if fmt not in _WRITERS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 17:
        raise ConfigError(f"digits must be a whole number from 1 to 17, got {digits!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 2:
        raise ConfigError(f"max_entries must be a whole number of at least 2, got {max_entries!r}")
    w = _WRITERS[fmt](digits, max_entries)
    _introduction(t=trace, w=w)
    _forward(trace, w)
    _cost(trace, w)
    _base_case(trace, w)
    _recursion(trace, w)
    _read_off(trace, w)
    _update(trace, w)
    _counting(trace, w)
    return w.finish()


def _introduction(t: StepTrace, w: _Writer) -> None:
    m, s = w.m, w.s
    acts = [lay.activation for lay in t.layers]
    if len(set(acts)) == 1:
        act = f"{m('g')} = {w.word(acts[0])} on every layer"
    else:
        act = ", ".join(f"{m(s('g', l))} = {w.word(a)}" for l, a in enumerate(acts, 1))
    w.title("One training step of backpropagation, traced")
    w.para(
        f"Network: layers {m('S = (' + ', '.join(map(str, t.sizes)) + ')')}, {act}, cost "
        f"{w.word(t.cost_name)}, learning rate {m(s('alpha') + ' = ' + w.num(t.learning_rate))}. "
        f"One example, {m('m = 1')}, so {m(w.mean_cost())}. In a batch of {m('m')} rows the "
        f"engine folds the {m('1/m')} into {m(s('delta', t.L))} once; here {m('1/m = 1')}, so "
        f"every {m(s('delta'))} below is the notes' per-example value. Every number is read "
        "from the engine's own buffers."
    )
    w.eqs([[s("a", 0), s("x"), w.vec(t.x)], [s("y"), w.vec(t.y)]])


def _forward(t: StepTrace, w: _Writer) -> None:
    s = w.s
    w.section("1. Forward sweep")
    for lay in t.layers:
        l = lay.l
        w.para(f"Layer {l}, {t.sizes[l]} units, {w.m(s('g', l))} = {w.word(lay.activation)}:")
        w.eqs(
            [
                [s("Theta", l), w.mat(lay.theta)],
                [s("b", l), w.vec(lay.b)],
                [
                    s("z", l),
                    s("a", l - 1) + w.dot + s("Theta", l) + " + " + s("b", l),
                    w.vec(lay.z),
                ],
                [s("a", l), w.g(lay.activation, s("z", l)), w.vec(lay.a)],
            ]
        )


def _cost(t: StepTrace, w: _Writer) -> None:
    w.section("2. Cost")
    row = w.cost_formula(t.cost_name, t.L)
    if t.cost_name == "squared_error" and t.sizes[-1] <= w.max_entries:
        a_L = t.layers[-1].a
        row.append(" + ".join(f"({w.num(a)} - {w.num(y)})^2" for a, y in zip(a_L, t.y)))
    row.append(w.num(t.cost))
    w.eqs([row])


def _base_case(t: StepTrace, w: _Writer) -> None:
    m, s, L = w.m, w.s, t.L
    out = t.layers[-1]
    dC_da = w.d("C", s("a", L))
    w.section(f"3. Base case: the output layer, {m(f'L = {L}')}")
    if out.dC_da is None:
        w.para(
            f"With a {w.word(out.activation)} output and the {w.word(t.cost_name)} cost, the "
            f"{m('1/a')} in the cost's derivative cancels against the derivative of "
            f"{m(s('g', L))}, and the loss gives the base case directly:"
        )
        w.eqs([[s("delta", L), s("a", L) + " - y", w.vec(out.delta)]])
        return
    deriv = "2 (" + s("a", L) + " - y)" if t.cost_name == "squared_error" else dC_da
    if out.g_prime is None:
        jacobian = (
            f"{s('delta', L, 'j')} = {s('a', L, 'j')} ({w.d('C', s('a', L, 'j'))} - "
            f"{w.sum_over('k')}{s('a', L, 'k')} {w.d('C', s('a', L, 'k'))})"
        )
        w.para(
            "Softmax couples the units of the output layer, so its derivative is a Jacobian "
            f"and {m(jacobian)}:"
        )
        w.eqs([[dC_da, deriv, w.vec(out.dC_da)], [s("delta", L), w.vec(out.delta)]])
        return
    w.para(
        f"{m(s('delta', L) + ' = ' + dC_da + w.mul + w.gp(L))}: the cost's derivative times the "
        f"activation's, which the engine computes from {m(s('a', L))} alone."
    )
    rows = [[dC_da, deriv, w.vec(out.dC_da)]]
    g_form = w.gprime_from_a(out.activation, L)
    rows.append([w.gp(L)] + ([g_form] if g_form else []) + [w.vec(out.g_prime)])
    rows.append([s("delta", L), dC_da + w.mul + w.gp(L), w.vec(out.delta)])
    w.eqs(rows)
    if t.sizes[L] <= w.max_entries:
        w.para("Unit by unit:")
        w.eqs(
            [
                [
                    s("delta", L, str(j)),
                    w.factor(out.dC_da[j]) + w.times + w.factor(out.g_prime[j]),
                    w.num(out.delta[j]),
                ]
                for j in range(t.sizes[L])
            ]
        )


def _recursion(t: StepTrace, w: _Writer) -> None:
    m, s, L, S = w.m, w.s, t.L, t.sizes
    if L == 1:
        w.section("4. Recursion")
        w.para("The network has no hidden layer, so there is no recursion.")
        return
    w.section(
        f"4. Recursion, {m(f'l = {L - 1}')} down to 1" if L > 2 else f"4. Recursion, {m('l = 1')}"
    )
    per_unit = f"{s('delta', 'l', 'k')} = {w.gp('l', 'k')}{w.times}{w.sum_over('j')}"
    per_unit += f"{s('Theta', 'l+1', 'kj')} {s('delta', 'l+1', 'j')}"
    vector = (
        f"{s('delta', 'l')} = ({s('Theta', 'l+1')}{w.dot}{s('delta', 'l+1')}){w.mul}{w.gp('l')}"
    )
    w.para(
        f"{m(per_unit)}, or for the whole layer {m(vector)}. Each {m(s('delta', 'l+1'))} was "
        "computed once, in the step before, and every unit of layer "
        f"{m('l')} reuses all of it: that reuse is what makes this a dynamic programme."
    )
    for l in range(L - 1, 0, -1):
        lay, nxt = t.layers[l - 1], t.layers[l]
        back = s("Theta", l + 1) + w.dot + s("delta", l + 1)
        w.para(
            f"Layer {l} reuses {m(s('delta', l + 1) + ' = ' + w.vec(nxt.delta))} in each of its "
            f"{S[l]} units:"
        )
        assert lay.dC_da is not None
        if lay.g_prime is None:
            w.eqs(
                [
                    [back, w.vec(lay.dC_da)],
                    [s("delta", l), "softmax Jacobian times (" + back + ")", w.vec(lay.delta)],
                ]
            )
            continue
        g_form = w.gprime_from_a(lay.activation, l)
        w.eqs(
            [
                [back, w.vec(lay.dC_da)],
                [w.gp(l)] + ([g_form] if g_form else []) + [w.vec(lay.g_prime)],
                [s("delta", l), "(" + back + ")" + w.mul + w.gp(l), w.vec(lay.delta)],
            ]
        )
        if S[l] > w.max_entries:
            continue
        shown = min(S[l + 1], 6)
        rows = []
        for k in range(S[l]):
            terms = [
                w.factor(nxt.theta[k, j]) + w.times + w.factor(nxt.delta[j]) for j in range(shown)
            ]
            if S[l + 1] > shown:
                terms.append(r"\cdots" if w.latex else "...")
            rows.append(
                [
                    s("delta", l, str(k)),
                    w.factor(lay.g_prime[k]) + w.times + w.paren(terms),
                    w.num(lay.delta[k]),
                ]
            )
        unit = w.gp(l, "k") + w.times + w.sum_over("j")
        unit += f"{s('Theta', l + 1, 'kj')} {s('delta', l + 1, 'j')}"
        w.para(f"Unit by unit, {m(s('delta', l, 'k') + ' = ' + unit)}:")
        w.eqs(rows)


def _read_off(t: StepTrace, w: _Writer) -> None:
    m, s, S = w.m, w.s, t.sizes
    w.section("5. Read-off, and finite differences entry by entry")
    weight = f"{w.d('C', s('Theta', 'l', 'kj'))} = {s('a', 'l-1', 'k')} {s('delta', 'l', 'j')}"
    if w.latex:
        central = r"(C(p + \varepsilon) - C(p - \varepsilon)) / 2\varepsilon"
    else:
        central = "(C(p + eps) - C(p - eps)) / (2 eps)"
    w.para(
        f"{m(weight)} "
        f"and {m(w.d('C', s('b', 'l', 'j')) + ' = ' + s('delta', 'l', 'j'))}: the bias is a weight "
        f"from a constant unit {m('a = 1')}. Each entry is one product of two numbers already "
        "in the tables. The finite difference is "
        f"{m(central)} "
        f"with {m(s('eps') + ' = ' + w.num(t.eps))}, from moving that one parameter and running "
        "the forward sweep again."
    )
    for lay in t.layers:
        l = lay.l
        a_prev = t.a(l - 1)
        sep = "" if max(S[l - 1], S[l]) <= 10 else ","
        entries = [
            (
                s("Theta", l, f"{k}{sep}{j}"),
                a_prev[k],
                lay.delta[j],
                lay.dtheta[k, j],
                lay.fd_dtheta[k, j],
            )
            for k in range(S[l - 1])
            for j in range(S[l])
        ]
        entries += [
            (s("b", l, str(j)), 1.0, lay.delta[j], lay.db[j], lay.fd_db[j]) for j in range(S[l])
        ]
        shown = entries[: w.max_entries]
        w.para(f"Layer {l}:")
        w.table(
            [
                f"parameter {m('p')}",
                m(s("a", l - 1, "k")),
                m(s("delta", l, "j")),
                f"engine {m(w.d('C', 'p'))}",
                "finite difference",
                "difference",
            ],
            [
                [m(name), w.tn(a), w.tn(d), w.tn(g), w.tn(f), m(w.small(abs(g - f)))]
                for name, a, d, g, f in shown
            ],
        )
        if len(shown) < len(entries):
            worst = max(abs(e[3] - e[4]) for e in entries)
            w.para(
                f"{len(shown)} of {len(entries)} parameters shown; the largest difference over "
                f"all {len(entries)} is {m(w.small(worst))}."
            )
    n_params = sum(lay.theta.size + lay.b.size for lay in t.layers)
    w.para(
        f"Over all {n_params} parameters, the largest relative error between the engine and "
        f"the finite differences is {m(w.small(t.fd_max_error))}."
    )


def _update(t: StepTrace, w: _Writer) -> None:
    m, s = w.m, w.s
    rule = s("Theta") + " := " + s("Theta") + " - " + s("alpha") + " " + w.d("C", s("Theta"))
    w.section("6. Update")
    w.para(f"{m(rule)} for every layer, with {m(s('alpha') + ' = ' + w.num(t.learning_rate))}:")
    for lay in t.layers:
        l = lay.l
        w.eqs(
            [
                [
                    s("Theta", l),
                    s("Theta", l) + " - " + s("alpha") + " " + w.d("C", s("Theta", l)),
                    w.mat(lay.theta_new),
                ],
                [
                    s("b", l),
                    s("b", l) + " - " + s("alpha") + " " + w.d("C", s("b", l)),
                    w.vec(lay.b_new),
                ],
            ],
            rel=":=",
        )
    w.para(
        f"After the step the cost of this example is {m('C_0 = ' + w.num(t.cost_after))} "
        f"(it was {m(w.num(t.cost))})."
    )


def _counting(t: StepTrace, w: _Writer) -> None:
    m, s, S, L, c = w.m, w.s, t.sizes, t.L, t.counts
    w.section("7. Why a dynamic programme: counting multiply-adds")
    paths = r"P_l = S_{l+1} \cdots S_L" if w.latex else "P_l = S_(l+1) ... S_L"
    w.para(
        f"Counted per example, for this network's {m('W = ' + str(c.weights))} weights. Both ways "
        f"start from the forward sweep ({c.forward} multiply-adds) and the base case. The plain "
        f"chain rule works out each weight of layer {m('l')} on its own, summing over its "
        f"{m(paths)} paths "
        f"to the output, each a product of {m('2(L - l) + 1')} factors. The dynamic programme "
        f"computes each {m(s('delta', 'l'))} once and reads every gradient off it."
    )
    w.table(
        ["layer", "weights", "paths per weight", "multiply-adds, path enumeration"],
        [
            [str(l), str(S[l - 1] * S[l]), str(c.paths[l - 1]), str(c.path_enumeration[l - 1])]
            for l in range(1, L + 1)
        ],
    )
    theta_delta, g_prime = m(s("Theta") + " " + s("delta")), m("g'")
    w.table(
        ["method", "multiply-adds after the forward sweep"],
        [
            [
                "dynamic programme",
                f"{c.backward} = {c.recursion} ({theta_delta}) + {c.derivative} "
                f"({g_prime}) + {c.read_off} (read-off)",
            ],
            ["path enumeration", str(c.path_total)],
        ],
    )
    w.para(
        f"One training step of the dynamic programme costs {c.forward} + {c.backward} = "
        f"{c.forward + c.backward} multiply-adds: about {m('W')} forward and {m('2W')} "
        f"backward, which the derivation writes as {m('2W')} and {m('4W')} by counting each "
        f"multiply and each add. With path enumeration it costs {c.forward} + {c.path_total} = "
        f"{c.forward + c.path_total}."
    )
    if t.path_multiplications is not None:
        w.para(
            f"Enumerating the paths of this network for real took {t.path_multiplications} "
            "multiplications, counted as they happened, and gave the dynamic programme's "
            f"gradients to within {m(w.small(t.path_max_difference or 0.0))}."
        )
    if L >= 2:
        growth = []
        for h in range(1, 7):
            cc = op_counts([S[0]] + [S[1]] * h + [S[L]])
            growth.append([str(h), str(cc.backward), str(cc.path_total)])
        w.para(
            "The gap grows exponentially with depth. The same input and output layers with "
            f"{m('h')} hidden layers of {S[1]} units:"
        )
        w.table(["hidden layers", "dynamic programme", "path enumeration"], growth)


def delta_norm_table(history: History, *, digits: int = 4) -> str:
    """The per-layer mean ``|delta^(l)|`` of each epoch as a text table, with a title line.

    Parameters
    ----------
    history : History
        From ``fit(..., track_delta_norms=True)``.
    digits : int
        Significant digits.

    Raises
    ------
    ConfigError
        If the history holds no such numbers.
    """
    norms = getattr(history, "delta_norms", None)
    if not norms:
        raise ConfigError(
            "this history has no per-layer delta norms; train with track_delta_norms=True"
        )
    L = len(norms[0])
    header = ["epoch"] + [f"delta^({l})" for l in range(1, L + 1)]
    epochs = history.epoch[len(history.epoch) - len(norms) :]  # a resumed run may add them late
    rows = [[str(e)] + [f"{v:.{digits}g}" for v in row] for e, row in zip(epochs, norms)]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(f"{h:>{wd}}" for h, wd in zip(header, widths))]
    lines.append("-" * len(lines[0]))
    lines.insert(0, "mean |delta^(l)| per example and unit, by epoch and layer:")
    lines += ["  ".join(f"{c:>{wd}}" for c, wd in zip(r, widths)) for r in rows]
    return "\n".join(lines) + "\n"
