"""The report: claim verdicts, one section per study, provenance; reads results only.

:func:`write_report` reads ``<workdir>/<study>/summary.json`` of every study (written by
the runner), and ``<workdir>/bench.json`` if present, and writes ``<workdir>/REPORT.md``
and ``<workdir>/verdicts.json``. It runs nothing and imports no study.
"""

import datetime
import math
import os
from pathlib import Path
from typing import Any

from ntk_limits_experiments import claims, registry, robustness, store
from ntk_limits_experiments.common import markdown_cell, markdown_table

__all__ = ["CLAIMS", "collect_verdicts", "load_summaries", "render_report", "write_report"]

CLAIMS: dict[str, str] = {c.id: c.statement for c in claims.CLAIMS.values()}
_CLAIM_STUDY = {c.id: c.study for c in claims.CLAIMS.values()}


def load_summaries(workdir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Returns ``study -> summary.json`` content: built-in studies first, then others."""
    found = {p.parent.name: p for p in sorted(Path(workdir).glob("*/summary.json"))}
    order = [n for n in registry.STUDIES if n in found] + [
        n for n in found if n not in registry.STUDIES
    ]
    summaries = {n: store.read_json(found[n], ("study", "verdicts")) for n in order}
    for name, summary in summaries.items():
        if summary["study"] != name or not isinstance(summary["verdicts"], list):
            raise store.DamagedFile(
                f"{found[name]} is not the summary of study {name!r}; allowed: a file "
                "written by 'ntk-limits run' (run the study again to rewrite it)"
            )
    return summaries


def _not_run_reason(study: str | None, summaries: dict[str, Any]) -> str:
    if study is None:
        return "no study decides this claim"
    if study in summaries:
        return f"study {study} did not return a verdict"
    if registry.is_built(study):
        return f"study {study} not run in this workdir"
    return f"study {study} not built yet"


def collect_verdicts(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns one verdict per claim: C1–C5 in order (``not run`` if missing), then others.

    Each is ``{claim, statement, verdict, rule, evidence, profile, study}``; C1–C5 carry
    their canonical statement from :data:`CLAIMS`.
    """
    decided: dict[str, list[dict[str, Any]]] = {}
    for name, summary in summaries.items():
        for v in summary.get("verdicts", []):
            row = {**v, "profile": summary.get("profile"), "study": name}
            row["data"] = _data_line(summary)
            row["statement"] = CLAIMS.get(v["claim"], v.get("statement", ""))
            decided.setdefault(v["claim"], []).append(row)
    rows = []
    for claim in [*CLAIMS, *sorted(set(decided) - set(CLAIMS))]:
        study = _CLAIM_STUDY.get(claim)
        rows.extend(
            decided.get(claim)
            or [
                {
                    "claim": claim,
                    "statement": CLAIMS[claim],
                    "verdict": "not run",
                    "rule": _not_run_reason(study, summaries),
                    "evidence": {},
                    "robustness": None,
                    "profile": None,
                    "study": study,
                    "data": None,
                }
            ]
        )
    return rows


def _data_line(summary: dict[str, Any]) -> str:
    """``"real"``, or which packaged stand-ins the study ran on (timing only)."""
    standins = summary.get("stand_ins") or []
    return f"stand-in ({', '.join(standins)})" if standins else "real"


def _num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if math.isfinite(x) else str(x)
    if isinstance(x, list):
        inner = ", ".join(_num(v) for v in x[:6])
        return f"[{inner}{', …' if len(x) > 6 else ''}]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_num(v)}" for k, v in x.items()) + "}"
    return str(x)


def _robustness_line(r: dict[str, Any] | None) -> str:
    """``stable (9/10 agree)``; ``not assessed`` without alternatives."""
    if not r or not r.get("total"):
        return "not assessed"
    return f"{r['label']} ({r['agree']}/{r['total']} agree)"


def _verdict_table(verdicts: list[dict[str, Any]]) -> str:
    rows = [
        (
            v["claim"],
            v["statement"],
            f"**{v['verdict']}**",
            _robustness_line(v.get("robustness")),
            f"{v['study']} ({v['profile']}"
            + (", **stand-in data**)" if str(v.get("data")).startswith("stand-in") else ")")
            if v.get("profile")
            else str(v.get("study")),
        )
        for v in verdicts
    ]
    header = ["claim", "statement", "verdict", "robustness", "decided by (profile)"]
    return markdown_table(header, rows)


def _bullets(evidence: dict[str, Any], depth: int = 0) -> str:
    """Nested bullet list: dicts become indented sub-lists, other values one line."""
    out = []
    for k, x in evidence.items():
        pad = "  " * depth
        if isinstance(x, dict) and x:
            out.append(f"{pad}- `{k}`:\n{_bullets(x, depth + 1)}")
        else:
            out.append(f"{pad}- `{k}`: {markdown_cell(_num(x))}\n")
    return "".join(out)


def _rests_on(summary: dict[str, Any] | None) -> str:
    """The scale and numerics a verdict was measured at: profile, runs, dtypes, devices."""
    if not summary:
        return "no stored study summary"
    envs = summary.get("environments", [])
    dtypes = sorted({e.get("dtype", "?") for e in envs}) or ["?"]
    devices = sorted({"{platform}/{kind}".format(**e["device"]) for e in envs if "device" in e})
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.get("status_counts", {}).items()))
    return (
        f"profile `{summary.get('profile')}`, {summary.get('n_runs', 0)} runs ({counts}), "
        f"default dtype {', '.join(dtypes)} (float64 where the study says so), "
        f"device {', '.join(devices) or '?'}, data {_data_line(summary)}"
    )


def _evidence_sections(verdicts: list[dict[str, Any]], summaries: dict[str, dict[str, Any]]) -> str:
    """Per decided claim: its rule as stated before the data, what it rests on, the numbers."""
    parts = []
    for v in verdicts:
        if v["verdict"] == "not run":
            continue
        parts.append(
            f"### {v['claim']}: {v['verdict']}\n\n**Rule.** {v['rule']}\n\n"
            f"**Rests on.** {_rests_on(summaries.get(v.get('study')))}.\n\n"
            f"**Evidence.**\n\n{_bullets(v['evidence'])}"
        )
    return "## Rules and evidence\n\n" + "\n".join(parts) if parts else ""


def _robustness_table(verdicts: list[dict[str, Any]]) -> str:
    """Per claim: the verdict, stable/fragile, and every alternative that disagrees."""
    rows = []
    for v in verdicts:
        r = v.get("robustness")
        if v["verdict"] == "not run":
            continue
        disagree = "; ".join(f"{a}: {d}" for a, d in (r or {}).get("disagreeing", {}).items())
        fraction = r.get("fraction") if r else None
        rows.append(
            (
                v["claim"],
                f"**{v['verdict']}**",
                (r or {}).get("label", "not assessed"),
                "–" if fraction is None else f"{r['agree']}/{r['total']} ({fraction:.0%})",
                ", ".join((r or {}).get("alternatives", {})) or "–",
                disagree or "none",
            )
        )
    if not rows:
        return ""
    header = ["claim", "verdict", "robustness", "agreeing", "alternatives tried", "disagreeing"]
    return (
        "## Robustness of the verdicts\n\n"
        "Each verdict recomputed by the same rule under the alternatives a reviewer would "
        "ask for (each leave-one-seed-out subset, the other parametrisation, thresholds and "
        "margins one step stricter and looser, the widest width dropped). **stable**: at "
        f"least {robustness.STABLE_FRACTION:.0%} of the alternatives agree and none reaches "
        "the opposite decision; **fragile** otherwise.\n\n" + markdown_table(header, rows)
    )


def _study_section(name: str, summary: dict[str, Any] | None) -> str:
    if summary is None:
        built = name not in registry.STUDIES or registry.is_built(name)
        return f"## {name}\n\n_Not run{'' if built else ': study not built yet'}._\n"
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.get("status_counts", {}).items()))
    parts = [
        f"## {name}\n",
        f"Profile `{summary.get('profile')}`; {summary.get('n_runs', 0)} runs ({counts}); "
        f"{summary.get('wall_time_s', 0):.1f} s of run time{_compiling(summary)}.\n",
        summary.get("text", "").strip() + "\n",
    ]
    if summary.get("stand_ins"):
        parts.insert(1, (
            f"**Stand-in data:** this study ran on {', '.join(summary['stand_ins'])}: "
            "packaged data at the paper sets' sizes (`ntk-limits run --stand-in`). Its "
            "numbers measure cost and exercise the code; its verdicts say nothing about "
            "the paper's claims.\n"
        ))  # fmt: skip
    for title, table in summary.get("tables", {}).items():
        parts.append(f"### {title}\n\n{table.strip()}\n")
    parts += [f"![{Path(f).stem}]({f})\n" for f in summary.get("figures", [])]
    failures = summary.get("failures", [])
    if failures:
        parts.append(
            "### Diverged and failed runs\n\n"
            + "".join(
                f"- `{f['key']}` {f['status']}: {markdown_cell(f['message'])} "
                f"(`{store.canonical_json(f['spec'])}`)\n"
                for f in failures
            )
        )
    return "\n".join(parts)


def _provenance(summaries: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, s in summaries.items():
        for env in s.get("environments", []):
            versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
            device = "{platform}/{kind}".format(**env["device"])
            rows.append((name, env["n_runs"], versions, env["dtype"], device))
    total = sum(s.get("wall_time_s", 0.0) for s in summaries.values())
    compiling = sum(s.get("compile_time_s") or 0.0 for s in summaries.values())
    table = markdown_table(["study", "runs", "versions", "dtype", "device"], rows) if rows else ""
    share = f" ({compiling:.1f} s compiling)" if compiling else ""
    return f"## Provenance\n\n{table}\nTotal run time: {total:.1f} s{share}.\n"


def _compiling(summary: dict[str, Any]) -> str:
    """`` (41.2 s of it compiling)``, or nothing where compilation was not measured."""
    seconds = summary.get("compile_time_s")
    return f" ({seconds:.1f} s of it compiling)" if seconds else ""


def _benchmarks(bench: Any) -> str:
    if isinstance(bench, dict):
        bench = bench.get("results", bench.get("benchmarks", []))
    keys = ("name", "value", "unit", "baseline", "ratio", "goal", "met")
    rows = [[_num(b.get(k, "")) for k in keys] for b in bench]
    return "## Benchmarks\n\n" + markdown_table(keys, rows)


def render_report(
    summaries: dict[str, dict[str, Any]],
    verdicts: list[dict[str, Any]],
    bench: Any = None,
    date: str | None = None,
) -> str:
    """Returns the markdown of REPORT.md (see :func:`write_report`)."""
    date = date or datetime.date.today().isoformat()
    profiles = sorted({str(s.get("profile")) for s in summaries.values()}) or ["none"]
    names = [*registry.STUDIES, *(n for n in summaries if n not in registry.STUDIES)]
    parts = [
        "# ntk-limits: report\n",
        f"Date: {date}. Profile(s): {', '.join(profiles)}.\n",
        "## Claims\n\n" + _verdict_table(verdicts),
        _robustness_table(verdicts),
        _evidence_sections(verdicts, summaries),
        *(_study_section(n, summaries.get(n)) for n in names),
    ]
    if bench is not None:
        parts.append(_benchmarks(bench))
    parts.append(_provenance(summaries))
    return "\n".join(parts)


def write_report(workdir: str | os.PathLike) -> tuple[Path, Path]:
    """Writes ``<workdir>/REPORT.md`` and ``<workdir>/verdicts.json`` from stored summaries.

    Args:
      workdir: a results folder written by the runner.

    Returns:
      The paths of REPORT.md and verdicts.json.
    """
    workdir = Path(workdir)
    summaries = load_summaries(workdir)
    verdicts = collect_verdicts(summaries)
    bench_path = workdir / "bench.json"
    bench = store.read_json(bench_path, kind=list) if bench_path.exists() else None
    report = store.write_text_atomic(
        workdir / "REPORT.md", render_report(summaries, verdicts, bench)
    )
    fields = ("claim", "statement", "verdict", "rule", "evidence", "robustness", "profile", "study",
              "data")  # fmt: skip
    rows = [{k: v.get(k) for k in fields} for v in verdicts]
    return report, store.write_json_atomic(workdir / "verdicts.json", rows)
