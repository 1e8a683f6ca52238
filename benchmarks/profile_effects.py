"""The measured effect of `--profile paper` (docs/fidelity.md) on real data, with a CI.

For each dataset and seed, the same run is trained under several settings:

- ``marsbench``: our defaults;
- ``paper``: the reference's semantics (every row of docs/fidelity.md the profile reproduces);
- ``marsbench+online``: our defaults but ``fe_path=online`` (augmentation, backbone every step),
  which isolates row 6 (the feature-extraction path) from the loop rows 1-5 and 7-8
  (feature_extraction runs only);
- ``marsbench+224``: our defaults but the reference's 224-px resize (``input_policy=reference,
  input_size=224``), which isolates row 9 (segmentation and detection runs only);
- ``paper_loop``: the paper profile on our data path (``fe_path=cached``, and native input for
  segmentation and detection), which isolates the loop rows 1-5 (schedulers, early stopping's
  ``min_delta``, the last epoch's weights tested) and the input rows 16-17 (resize without
  antialiasing, ImageNet mean/std) from the feature path (rows 6-7), plus row 14 with
  ``--loss dice`` on segmentation;
- ``marsbench+min_delta``, ``marsbench+last_epoch``, ``marsbench+resize``,
  ``marsbench+imagenet_norm`` and ``marsbench+dice_clamp``: our defaults with one row of the
  paper profile each: row 4 (early stopping's ``min_delta`` 0.01), row 5 (the last epoch's weights
  tested), row 16 (resize without antialiasing), row 17 (ImageNet mean/std for every 3-channel
  model) or row 14 (the reference's generalised Dice; segmentation with ``--loss dice`` or
  ``combined`` only). No run option reaches these (a profile is all or nothing); the script
  swaps the one field of the ``marsbench`` profile's settings for the run and keeps each
  setting's runs in their own folder, so no record is mistaken for another's;
- ``marsbench+online+train_mode``: ``marsbench+online`` with row 7 (the frozen backbone left in
  train mode: BatchNorm on batch statistics, its running statistics drifting, dropout on);
  compare it with ``--baseline marsbench+online`` to isolate row 7;
- ``marsbench+torchvision_threshold`` (detection, derived, nothing more is trained): each
  ``marsbench`` run's test detections scored again keeping only those at or above torchvision's
  default score threshold (Faster R-CNN and RetinaNet 0.05, SSD 0.01) instead of our 0.01:
  row 20 alone. Exact, not an approximation: the threshold is applied before per-class NMS and
  the 100-box cap, and dropping boxes below it never changes which boxes above it survive
  either, so these are the detections the model would output under the higher threshold.

Without ``--settings`` every setting that applies to the task, regime and loss runs; a setting
named that does not apply is refused in one line.

It prints, per dataset and setting, the test headline (mean and standard deviation over seeds) and
the paired difference from ``marsbench`` (or ``--baseline``; mean over seeds, 95 % percentile
bootstrap CI of that mean over the seeds, by `scipy.stats.bootstrap`). Seeds are paired: the same
seed draws the same head initialisation and batch order in every setting where the setting allows
it.

    python benchmarks/profile_effects.py [--root ../shared/data] [--datasets mb-landmark_cls-mini]
        [--model efficientnet_lite0] [--seeds 0 1 10 42 123] [--epochs 30] [--json out.json]

``--root`` defaults to ``../shared/data`` beside the repository (real Mars images); ``--synthetic``
generates a small synthetic dataset instead (the smoke test uses it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (profile, options)
    "marsbench": ("marsbench", {}),
    "paper": ("paper", {}),
    "marsbench+online": ("marsbench", {"fe_path": "online"}),
    "marsbench+224": ("marsbench", {"input_policy": "reference", "input_size": 224}),
    "paper_loop": ("paper", {"fe_path": "cached"}),
}
ONE_ROW = {  # setting -> (the profile table, the field it takes from the paper profile)
    "marsbench+min_delta": ("LOOP_SETTINGS", "min_delta"),
    "marsbench+last_epoch": ("LOOP_SETTINGS", "restore_best"),
    "marsbench+resize": ("INPUT_SETTINGS", "antialias"),
    "marsbench+imagenet_norm": ("INPUT_SETTINGS", "imagenet_stats"),
    "marsbench+dice_clamp": ("LOOP_SETTINGS", "reference_dice"),
    "marsbench+online+train_mode": ("LOOP_SETTINGS", "frozen_backbone_train_mode"),
}
SETTINGS |= {name: ("marsbench", {}) for name in ONE_ROW}
SETTINGS["marsbench+online+train_mode"] = ("marsbench", {"fe_path": "online"})


@contextlib.contextmanager
def profile_of(setting: str):
    """While the run trains: the ``marsbench`` profile with `setting`'s one field from ``paper``."""
    from marsbench.runs import profiles

    if setting not in ONE_ROW:
        yield
        return
    table_name, field = ONE_ROW[setting]
    table = getattr(profiles, table_name)
    saved = table["marsbench"]
    table["marsbench"] = dataclasses.replace(saved, **{field: getattr(table["paper"], field)})
    try:
        yield
    finally:
        table["marsbench"] = saved


def not_applicable(setting: str, task: str, regime: str, loss: str) -> str | None:
    """Why `setting` changes nothing in a run of `task`, `regime` and `loss`; None if it does."""
    if setting in ("marsbench+online", "marsbench+online+train_mode") \
            and regime != "feature_extraction":
        return "it changes feature_extraction runs only"
    if setting == "marsbench+224" and task == "classification":
        return "it changes segmentation and detection input only"
    if setting == "marsbench+dice_clamp" and not (task == "segmentation"
                                                  and loss in ("dice", "combined")):
        return "it changes segmentation's Dice loss only (--loss dice or combined)"
    return None


DERIVED = "marsbench+torchvision_threshold"  # scored from the marsbench runs, not trained


@contextlib.contextmanager
def rescored_at_torchvision_threshold():
    """While a detection run trains: its test detections are also scored at torchvision's
    default threshold for the detector, into ``extra["test_at_torchvision_threshold"]``."""
    from marsbench.metrics.detection import detection_metrics
    from marsbench.models.detection import torchvision_score_threshold
    from marsbench.training.detection import DetectionTask

    original = DetectionTask.evaluate

    def evaluate(self, split: str) -> dict:
        metrics = original(self, split)
        threshold = torchvision_score_threshold(self.model.net)
        if split == "test" and threshold is not None:
            kept = []
            for d in self.detections[split]:
                keep = d.scores >= threshold
                kept.append(dataclasses.replace(d, boxes=d.boxes[keep], labels=d.labels[keep],
                                                scores=d.scores[keep]))
            self.info["test_at_torchvision_threshold"] = {
                "threshold": threshold,
                **detection_metrics(kept, self.splits["train"].class_names)}
        return metrics

    DetectionTask.evaluate = evaluate
    try:
        yield
    finally:
        DetectionTask.evaluate = original


def setting_options(setting: str, task: str, regime: str) -> tuple[str, dict]:
    """The profile and run options of `setting` for a run of `task` in `regime`."""
    profile, options = SETTINGS[setting]
    if setting == "paper_loop":
        options = {} if regime != "feature_extraction" else dict(options)
        if task in ("segmentation", "detection"):
            options["input_policy"] = "native"
    return profile, options


def paired_ci(diffs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap CI of the mean paired difference (NaN with fewer than 2)."""
    from scipy.stats import bootstrap

    if len(diffs) < 2 or np.allclose(diffs, diffs[0]):
        return (float(diffs.mean()), float(diffs.mean())) if len(diffs) else (np.nan, np.nan)
    res = bootstrap((diffs,), np.mean, n_resamples=10_000, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def headline(record) -> tuple[str, float]:
    """The task's headline test metric (`TASK_HEADLINES`, as the report's)."""
    from marsbench.aggregate.normalise import TASK_HEADLINES

    name = TASK_HEADLINES[str(record.spec.task)]
    return name, float(record.metrics["test"][name])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--datasets", nargs="+", default=["mb-landmark_cls-mini"])
    ap.add_argument("--synthetic", action="store_true",
                    help="a generated 3-class dataset instead of --root (for the smoke test)")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--regime", default="feature_extraction")
    ap.add_argument("--settings", nargs="+", default=None, choices=list(SETTINGS),
                    help="default: every setting that applies to the datasets' task")
    ap.add_argument("--baseline", default="marsbench", choices=list(SETTINGS),
                    help="the setting every other one is paired against (one of --settings)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 10, 42, 123])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--loss", default="auto",
                    help="the run's loss in every setting (e.g. dice on segmentation)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="profile-effects-"))
    if args.synthetic:
        from marsbench.sources.synth import generate

        root = work / "data"
        datasets = [generate("mb-frost_cls", root, scale=0.05).name]
    else:
        root, datasets = args.root, args.datasets
        missing = [d for d in datasets if not (root / d).is_dir()]
        if missing:
            print(f"profile_effects: {', '.join(missing)} not found under {root}; pass --root "
                  f"(the folder holding them) or --synthetic", file=sys.stderr)
            return 2
    from marsbench.errors import MarsbenchError
    from marsbench.runs.spec import dataset_card

    try:  # every dataset opens before the first run trains
        tasks = {str(dataset_card(d, str(root)).task) for d in datasets}
    except MarsbenchError as exc:
        print(f"profile_effects: error: {exc}", file=sys.stderr)
        return 2
    if len(tasks) > 1:
        print(f"profile_effects: --datasets mixes tasks ({', '.join(sorted(tasks))}); run one "
              f"task at a time", file=sys.stderr)
        return 2
    task = tasks.pop()
    why_not = {s: not_applicable(s, task, args.regime, args.loss) for s in SETTINGS}
    refused = [f"{s} ({why_not[s]})" for s in args.settings or () if why_not[s]]
    if refused:
        print(f"profile_effects: --settings: {'; '.join(refused)}; leave it out",
              file=sys.stderr)
        return 2
    settings = args.settings or [s for s in SETTINGS if not why_not[s]]
    if task == "detection" and "marsbench" in settings:
        settings.append(DERIVED)
    if args.baseline not in settings:
        print(f"profile_effects: --baseline {args.baseline} is not among the settings run "
              f"({', '.join(settings)}); add it to --settings", file=sys.stderr)
        return 2
    rows: list[dict] = []
    status = 0
    try:
        for dataset in datasets:
            for setting in settings:
                for seed in args.seeds:
                    if setting != DERIVED:
                        rows += train_one(args, root, dataset, task, setting, seed, work)
    except MarsbenchError as exc:  # one line; the runs already done are still summarised
        print(f"profile_effects: error: {exc}", file=sys.stderr)
        status = 2
    summary = summarise(rows, settings, args.baseline)
    print_table(summary, args)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows, "summary": summary}, indent=1))
    return status


def train_one(args, root: Path, dataset: str, task: str, setting: str, seed: int,
              work: Path) -> list[dict]:
    """Train one run of `setting` at `seed`; its row of the table (and a detection
    ``marsbench`` run's `DERIVED` row)."""
    from marsbench.runs.profiles import loop_settings
    from marsbench.runs.spec import RunSpec
    from marsbench.training.run import run_experiment

    profile, options = setting_options(setting, task, args.regime)
    if args.input_size:
        options = {**options, "input_size": args.input_size}
    spec = RunSpec(dataset=str(root / dataset), model=args.model, regime=args.regime,
                   lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
                   patience=args.patience, seed=seed, profile=profile, loss=args.loss,
                   options=options)
    t0 = time.perf_counter()
    rescore = (rescored_at_torchvision_threshold() if task == "detection"
               and setting == "marsbench" else contextlib.nullcontext())
    with profile_of(setting), rescore:
        frozen_train_mode = loop_settings(profile).frozen_backbone_train_mode
        record = run_experiment(spec, out_dir=work / "out" / setting)
    metric, value = headline(record)
    row = dict(dataset=dataset, setting=setting, seed=seed, metric=metric, value=value,
               profile=record.spec.profile,
               fe_path=getattr(record.spec.options, "fe_path", None),
               epochs=record.epochs_run, best_epoch=record.best_epoch,
               tested_epoch=record.extra.get("tested_epoch"),
               # the cached path never runs the backbone while training
               frozen_train_mode=frozen_train_mode and getattr(record.spec.options, "fe_path",
                                                               None) != "cached",
               preprocessing=record.extra.get("preprocessing"),
               seconds=round(time.perf_counter() - t0, 1))
    print(f"  {dataset} {setting} seed {seed}: {metric} {value:.4f} "
          f"({row['epochs']} epochs, {row['seconds']} s)", flush=True)
    rescored = record.extra.get("test_at_torchvision_threshold")
    if rescored is None:
        return [row]
    derived = dict(row, setting=DERIVED, value=float(rescored[metric]),
                   score_threshold=rescored["threshold"], seconds=0.0)
    print(f"  {dataset} {DERIVED} seed {seed}: {metric} {derived['value']:.4f} "
          f"(score threshold {rescored['threshold']})", flush=True)
    return [dict(row, score_threshold=record.extra.get("score_threshold")), derived]


def summarise(rows: list[dict], settings: list[str], baseline: str = "marsbench") -> list[dict]:
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        by = {s: {r["seed"]: r["value"] for r in rows
                  if r["dataset"] == dataset and r["setting"] == s} for s in settings}
        base = by.get(baseline, {})
        for s in (s for s in settings if by[s]):  # a run that stopped early leaves gaps
            vals = np.array(list(by[s].values()))
            row = dict(dataset=dataset, setting=s, n=len(vals), mean=float(vals.mean()),
                       std=float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                       diff=None, ci_low=None, ci_high=None)
            seeds = sorted(set(by[s]) & set(base))
            if s != baseline and seeds:
                diffs = np.array([by[s][k] - base[k] for k in seeds])
                row["diff"] = float(diffs.mean())
                row["ci_low"], row["ci_high"] = paired_ci(diffs)
            out.append(row)
    return out


def print_table(summary: list[dict], args) -> None:
    print(f"\nmodel {args.model}, regime {args.regime}, seeds {args.seeds}, "
          f"max_epochs {args.epochs}, patience {args.patience}, lr {args.lr}, "
          f"batch {args.batch_size}, loss {args.loss}, CPU threads {os.cpu_count()}")
    width = max([len("setting"), *(len(r["setting"]) for r in summary)])
    head = f"{'dataset':<26} {'setting':<{width}} {'n':>2} {'mean':>7} {'sd':>7}   " \
           f"{'diff vs ' + args.baseline + ' [95% CI]':<30}"
    print(head)
    print("-" * len(head))
    for r in summary:
        diff = ("" if r["diff"] is None else
                f"{r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
        print(f"{r['dataset']:<26} {r['setting']:<{width}} {r['n']:>2} {r['mean']:>7.4f} "
              f"{r['std']:>7.4f}   {diff}")


if __name__ == "__main__":
    sys.exit(main())
