"""The gradient-masking audit of compare's runs (`sspnet.eval`'s audit), done by the job (`work.job.run_job`)
that completes the pair of a run and its transfer source: each run on `EvalSettings.audit_images`
class-stratified test images, with the baseline run of the same seed as the transfer source (for the baseline
itself, the baseline of the next seed; none with one seed).
Each audit is cached in RUN_DIR/audit.json under a key of the evaluation settings and both runs' training
hashes; its flags go into the record, the report's audit section (`report.audit`) and the Findings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sspnet.experiments.compare.analysis.comparisons import baseline_of
from sspnet.experiments.compare.plan.runs import PlannedRun, config_hash
from sspnet.io.runlayout import RunLayout

AUDIT_FILE = RunLayout.AUDIT


@dataclass
class AuditJob:
    """The audit of one run: its transfer source (None: no transfer attack) and its cache key."""

    run: PlannedRun
    source: PlannedRun | None
    key: str


def _name(run: PlannedRun) -> str:
    return f"{run.model} seed {run.seed}{' ' + run.variant if run.variant else ''}"


def plan_audits(plan: list[PlannedRun], eval_hash: str, ev: Any) -> list[AuditJob]:
    """One job per run: the source is the baseline of the same variant and seed (the baseline's next seed
    for the baseline itself); the key covers the evaluation and audit settings and both runs' training."""
    from sspnet.experiments.compare.config import AUDIT_FIELDS

    settings = {"eval": eval_hash, **{k: getattr(ev, k) for k in AUDIT_FIELDS}}
    by = {(r.variant, r.model, r.seed): r for r in plan}
    jobs = []
    for r in plan:
        models = list(dict.fromkeys(x.model for x in plan if x.variant == r.variant))
        base = baseline_of(models)
        seeds = sorted(x.seed for x in plan if x.variant == r.variant and x.model == base)
        if r.model == base:
            later = [s for s in seeds if s > r.seed] + [s for s in seeds if s < r.seed]
            source = by[(r.variant, base, later[0])] if later else None
        else:
            source = by.get((r.variant, base, r.seed))
        key = config_hash({**settings, "train": r.train_hash, "source": source.train_hash if source else None})
        jobs.append(AuditJob(r, source, key))
    return jobs


def read_cached(job: AuditJob) -> dict[str, Any] | None:
    """The stored audit of a job when its key matches."""
    path = job.run.run_dir / AUDIT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if data.get("key") == job.key else None


def audit_function() -> Callable | None:
    """sspnet.eval's gradient-masking audit (None when this version has none)."""
    import sspnet.eval

    return getattr(sspnet.eval, "audit", None)


def execute_audit(job: AuditJob, ev: Any, dataset: str, device: str, data_root: str | None) -> dict[str, Any]:
    """Audit one run; writes RUN_DIR/audit.json and returns what it holds."""
    from sspnet import data
    from sspnet.data.subsets import subset_indices
    from sspnet.io.files import atomic_write_json
    from sspnet.io.jsonio import to_jsonable
    from sspnet.nn.checkpoints import load_model

    t0 = time.perf_counter()
    model = load_model(job.run.run_dir, crit=ev.crit, device=device)
    source = load_model(job.source.run_dir, crit=ev.crit, device=device) if job.source else None
    images, labels = data.load(dataset, root=data_root, split="test", device=device)
    idx = subset_indices(labels, min(ev.audit_images, ev.n_images or ev.audit_images))  # inside the main set
    result = call_audit(model, source, images, labels, idx, ev)
    out = {
        "key": job.key,
        "images": int(idx.numel()),
        "source": _name(job.source) if job.source else None,
        "source_run": str(job.source.run_dir) if job.source else None,
        **result,
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_json(job.run.run_dir / AUDIT_FILE, to_jsonable(out))
    return json.loads((job.run.run_dir / AUDIT_FILE).read_text(encoding="utf-8"))


def merge_audit(record: dict[str, Any], audit: dict[str, Any]) -> None:
    """Put an audit into a run record; its AutoAttack (when it ran) becomes the record's AutoAttack result:
    accuracy in %, image count, the audit's image set and per-image bits (AutoAttack runs once per run)."""
    record["audit"] = audit
    acc = (audit.get("accuracy") or {}).get("autoattack")
    bits = (audit.get("correct") or {}).get("autoattack")
    if acc is None or bits is None or not audit.get("subset"):
        return
    from sspnet.experiments.compare.work.perimage import unpack

    record["eval"]["autoattack"] = 100.0 * float(unpack(bits, int(audit["images"])).mean())
    record["eval"]["autoattack_images"] = audit["images"]
    record["images"]["autoattack"] = audit["subset"]
    record["correct"]["autoattack"] = bits


def call_audit(model: Any, source: Any, images: Any, labels: Any, idx: Any, ev: Any) -> dict[str, Any]:
    """`sspnet.eval.audit` of `model` on images idx at compare's eps and PGD settings (transfer from `source`;
    AutoAttack as ev.autoattack): {"flags", "accuracy", "details", "timings", "config", "subset", "correct":
    per-image bits of every attack (`perimage.pack`, in the order of subset["indices"])}."""
    from sspnet.experiments.compare.work.perimage import pack

    r = audit_function()(model, images, labels, ev.audit_config(), indices=idx, source_model=source)
    return {
        "flags": r.flags,
        "accuracy": r.accuracy,
        "details": r.details,
        "timings": r.timings,
        "config": r.config,
        "subset": r.subset,
        "correct": {k: pack(v) for k, v in r.correct.items()},
    }
