"""The report's gradient-masking section from the runs' audit records (`work.audit` runs and caches them):
`audit_summary` (what ran, the flags) and `audit_section` (accuracy (%) of every check per run, the flags)."""

from __future__ import annotations

from typing import Any

from sspnet.experiments.compare.analysis.findings import short_name


def run_name(rec: dict[str, Any]) -> str:
    """'ssp2 seed 0' (with the variant when there is one)."""
    return f"{short_name(rec['model'])} seed {rec['seed']}{' ' + rec['variant'] if rec.get('variant') else ''}"


def audit_summary(records: list[dict[str, Any]], note: str | None = None) -> dict[str, Any]:
    """{"ran", "images", "runs", "of", "checks", "flags": [{"run", "name", "message"}], "reason"} over the
    runs' audits."""
    audited = [r for r in records if r.get("audit")]
    if not audited:
        return {"ran": False, "reason": note or "no run was audited", "flags": []}
    flags = [
        {"run": run_name(r), "name": f.get("name", "?"), "message": f.get("message", str(f))}
        for r in audited
        for f in r["audit"].get("flags") or []
    ]
    images = sorted({r["audit"].get("images") for r in audited}, key=str)
    return {
        "ran": True,
        "images": "/".join(map(str, images)),
        "runs": len(audited),
        "of": len(records),
        "checks": _checks(audited[0]["audit"]),
        "flags": flags,
        "reason": note,
    }


def _checks(a: dict[str, Any]) -> str:
    """What an audit ran, from its config: 'white-box PGD-10/40, Square (1000 queries), transfer, ...'."""
    c = a.get("config") or {}
    parts = [
        f"white-box PGD-{c.get('steps', '?')}/{c.get('long_steps', '?')}",
        f"Square ({c.get('queries', '?')} queries)",
        "transfer PGD from the baseline",
        f"PGD at eps {(a.get('details') or {}).get('large_eps', '?')}",
    ]
    if "autoattack" in (a.get("accuracy") or {}):
        parts.append("AutoAttack")
    return ", ".join(parts)


AUDIT_COLUMNS = (
    ("clean", "clean"),
    ("white_box", "white-box PGD"),
    ("square", "Square"),
    ("transfer", "transfer"),
    ("autoattack", "AutoAttack"),
    ("large_eps", "large eps"),
)


def audit_section(records: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The report's gradient-masking section: accuracy (%) of every check per run, then the flags."""
    lines = ["", "## Gradient-masking audit", ""]
    if not summary["ran"]:
        return lines + [f"Not run: {summary['reason']}."]
    lines += [
        f"{summary['runs']} of {summary['of']} runs audited (`sspnet.eval.audit`) on a class-stratified "
        f"subset of {summary['images']} test images: {summary['checks']}. Transfer source: the baseline run "
        "of the same seed (for the baseline itself, the baseline of another seed; none with one seed).",
        "",
        "| run | source | " + " | ".join(n for _, n in AUDIT_COLUMNS) + " | flags |",
        "|---|---|" + "---:|" * len(AUDIT_COLUMNS) + "---|",
    ]
    for r in records:
        a = r.get("audit")
        if a:
            acc = a.get("accuracy") or {}
            cells = [f"{100 * acc[k]:.1f}" if acc.get(k) is not None else "-" for k, _ in AUDIT_COLUMNS]
            flags = ", ".join(f.get("name", "?") for f in a.get("flags") or []) or "none"
            lines.append(f"| {run_name(r)} | {a.get('source') or '-'} | " + " | ".join(cells) + f" | {flags} |")
    lines += [""] + [f"- FLAG {f['run']}: {f['message']}" for f in summary["flags"]]
    return lines
