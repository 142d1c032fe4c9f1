"""Which kernel implementations a run used, for its report.

Each worker tells the master which implementation each compiled-kernel module it used ran
with (:func:`hpcpipe.kernels._loader.kernels_used`: ``pythran``, or ``numpy`` for the NumPy
reference, about ten times slower); the master appends them to the run's journal
(``{"event": "kernels", "rank", "host", "kernels"}`` lines) and the report shows them:
:func:`kernel_summary` for ``report.json``, :func:`kernel_section` for ``report.html``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["kernel_summary", "kernel_section"]

KernelsByRank = Mapping[int, Mapping[str, Any]]


def kernel_summary(kernels: KernelsByRank | None) -> dict[str, Any]:
    """``by_rank`` (``{rank: {"host", "kernels"}}``, ranks as strings for JSON), ``modules``
    (``{module: {implementation: [ranks]}}``) and ``slow``: the modules some rank ran with
    the NumPy reference. Empty when nothing was recorded (no unit ran, or a journal of an
    older run)."""
    if not kernels:
        return {}
    modules: dict[str, dict[str, list[int]]] = {}
    for rank in sorted(kernels):
        for module, impl in sorted(kernels[rank].get("kernels", {}).items()):
            modules.setdefault(module, {}).setdefault(str(impl), []).append(int(rank))
    slow = sorted(m for m, impls in modules.items() if any(i.startswith("numpy") for i in impls))
    return {"by_rank": {str(r): {"host": str(kernels[r].get("host", "")),
                                 "kernels": dict(kernels[r].get("kernels", {}))}
                        for r in sorted(kernels)},
            "modules": modules, "slow": slow}


def kernel_section(summary: Mapping[str, Any]) -> str:
    """The "Kernels" part of report.html: one row per module, its implementation(s) and the
    ranks that used each; the NumPy references in red."""
    esc = html.escape
    if not summary:
        return "<p>Not recorded (no unit ran in this run).</p>"
    rows = []
    for module, impls in sorted(summary["modules"].items()):
        cells = []
        for impl, ranks in sorted(impls.items()):
            text = f"{esc(impl)} (rank{'s' if len(ranks) > 1 else ''} " \
                   f"{', '.join(str(r) for r in ranks)})"
            if impl.startswith("numpy"):
                text = f'<span style="color:#c62828"><b>{text}</b></span>'
            cells.append(text)
        rows.append(f"<tr><td>{esc(module)}</td><td style=\"text-align:left\">"
                    f"{'; '.join(cells)}</td></tr>")
    note = ""
    if summary["slow"]:
        note = ("<p style=\"color:#c62828\">Some units ran with the NumPy references of "
                f"{esc(', '.join(summary['slow']))} (about 10x slower): compile the kernels "
                "(<code>python setup.py build_ext --inplace</code> or "
                "<code>bash scripts/bootstrap.sh</code>).</p>")
    return (f"{note}<table><tr><th>module</th><th style=\"text-align:left\">implementation "
            f"(ranks)</th></tr>{''.join(rows)}</table>")
