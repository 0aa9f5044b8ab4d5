#!/usr/bin/env python3
"""Peer side of the drift benchmark: Evidently's DataDriftPreset (defaults) on the same data.

Benchmark only (switchyard-bench peers), never a product dependency; runs in its own venv from
bench/peers/requirements-evidently.txt.

    python evidently_drift.py --reference ref.f64 --current cur.f64 --columns 64 --repeat 3 --out result.json

Inputs are raw little-endian float64, row-major, `columns` values per row; column names are
f0..f{columns-1}, all numerical. The whole `report.run(...)` call is timed (time.perf_counter)
`--repeat` times, after one untimed warm-up when --repeat > 1. Dataset construction (a copy of
the DataFrame) is done once, outside the timed region.

Per-column decisions. Evidently 0.7's public snapshot (snapshot.dict()) gives, per ValueDrift
metric, the score ("value") and the resolved method display name and threshold ("config"), but
no drift flag unless the Report runs with include_tests=True, which is not the default. So the
flag written here is DERIVED exactly as Evidently's stat tests decide it
(evidently/legacy/calculations/stattests/*.py):
    wasserstein, jensenshannon, psi (distances):  drifted = score >= threshold
    ks (K-S p_value):                              drifted = p <= threshold
    chisquare, z (p-values):                       drifted = p <  threshold
(full table in _COMPARATORS), and then VERIFIED, the script failing (exit 3) on any mismatch, against
  1. the DriftedColumnsCount metric (count and share) of the same snapshot, and
  2. Evidently's own per-column drift_detected flags and dataset_drift from the legacy
     DataDriftTable / DatasetDriftMetric results that the preset computes inside the same
     report.run() (held in snapshot.context._legacy_metrics, a private attribute: if a later
     Evidently moves it, this check is reported as unavailable instead of failing).
"""

import os

# Telemetry off before evidently is imported. Evidently's own event logger (evidently/telemetry.py,
# used by its UI service and legacy collector, not by Report.run) honours DO_NOT_TRACK; the
# iterative_telemetry library it uses honours ITERATIVE_DO_NOT_TRACK; the legacy config reads
# EVIDENTLY_DISABLE_TELEMETRY. All three are set; the audit hook below also blocks any socket.
for _var, _val in (("DO_NOT_TRACK", "1"), ("ITERATIVE_DO_NOT_TRACK", "1"), ("EVIDENTLY_DISABLE_TELEMETRY", "1")):
    os.environ[_var] = _val

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

_NETWORK_ATTEMPTS = []


def _no_network(event, args):
    # A benchmark peer must not talk to anything: record and refuse any outgoing connection or
    # name lookup (AF_UNIX connects are let through: local, not network).
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg", "urllib.Request"):
        if event == "socket.connect":
            af_unix = getattr(__import__("socket"), "AF_UNIX", -1)
            if getattr(args[0], "family", None) == af_unix:
                return
        _NETWORK_ATTEMPTS.append(f"{event} {args[1:] if event.startswith('socket') else args[0]!r}")
        raise RuntimeError(f"network access blocked in the benchmark peer: {event}")


sys.addaudithook(_no_network)

import evidently  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

DRIFT_SHARE = 0.5  # DataDriftPreset's default drift_share

# Evidently's comparators, keyed by the StatTest registry name, copied from the `return score,
# score <op> threshold` line of each evidently/legacy/calculations/stattests/*.py in 0.7.23. Only
# wasserstein / ks (and jensenshannon / chisquare / z for <= 5 distinct values) are chosen by
# default for numerical columns; the rest are here so a forced method still gets a decision.
_COMPARATORS = {
    "wasserstein": ">=",
    "jensenshannon": ">=",
    "psi": ">=",
    "kl_div": ">=",
    "hellinger": ">=",
    "ed": ">",  # energy distance: strictly greater
    "ks": "<=",
    "cramer_von_mises": "<=",
    "chisquare": "<",
    "z": "<",
    "anderson": "<",
    "es": "<",
    "fisher_exact": "<",
    "g_test": "<",
    "mannw": "<",
    "empirical_mmd": "<",
    "t_test": "<",
    "TVD": "<",
}


def _stattest_names():
    """display_name -> registry name, from Evidently's own stat-test registry."""
    out = {}
    try:
        from evidently.legacy.calculations import stattests

        for obj in vars(stattests).values():
            if isinstance(obj, stattests.StatTest):
                out[obj.display_name] = obj.name
    except Exception:  # pragma: no cover - registry moved; fall back to names in the table
        pass
    return out


def _derive(score, method_display, threshold, names):
    name = names.get(method_display, method_display)
    op = _COMPARATORS.get(name)
    if op is None or threshold is None or score is None or math.isnan(score):
        return None, name
    if op == ">=":
        return bool(score >= threshold), name
    if op == ">":
        return bool(score > threshold), name
    if op == "<=":
        return bool(score <= threshold), name
    return bool(score < threshold), name


def load(path, columns):
    data = np.fromfile(path, dtype="<f8")
    if data.size % columns:
        sys.exit(f"{path}: {data.size} float64 values is not a multiple of {columns} columns")
    return data.reshape(-1, columns)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True)
    ap.add_argument("--current", required=True)
    ap.add_argument("--columns", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.columns < 1 or a.repeat < 1:
        sys.exit("--columns and --repeat must be >= 1")

    names = [f"f{i}" for i in range(a.columns)]
    ref_df = pd.DataFrame(load(a.reference, a.columns), columns=names)
    cur_df = pd.DataFrame(load(a.current, a.columns), columns=names)

    # Every column list given explicitly, so PandasDataset infers nothing (it only infers when one
    # of these lists is None).
    definition = DataDefinition(
        numerical_columns=names,
        categorical_columns=[],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    reference = Dataset.from_pandas(ref_df, data_definition=definition)
    current = Dataset.from_pandas(cur_df, data_definition=definition)

    seen_warnings = {}
    times = []
    cpu_times = []  # process CPU seconds per run, less sensitive to a loaded machine than wall time
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warmup = a.repeat > 1
        if warmup:
            Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
        snapshot = None
        for _ in range(a.repeat):
            report = Report([DataDriftPreset()])  # defaults: drift_share 0.5, auto methods, no tests
            c0 = time.process_time()
            t0 = time.perf_counter()
            snapshot = report.run(current_data=current, reference_data=reference)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        for w in caught:
            key = f"{w.category.__name__}: {w.message}"
            seen_warnings[key] = seen_warnings.get(key, 0) + 1

    # ---- extraction from the public snapshot dict ----
    registry = _stattest_names()
    cols = {}
    count = share = None
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        kind = cfg.get("type", "")
        if kind.endswith(":ValueDrift"):
            score = float(m["value"])
            method = cfg.get("method")
            threshold = cfg.get("threshold")
            drifted, test_name = _derive(score, method, threshold, registry)
            cols[cfg["column"]] = {
                "score": score,
                "method": method,
                "test": test_name,
                "threshold": None if threshold is None else float(threshold),
                "drifted": drifted,
            }
        elif kind.endswith(":DriftedColumnsCount"):
            count = int(m["value"]["count"])
            share = float(m["value"]["share"])

    problems = []
    if sorted(cols) != sorted(names):
        problems.append(f"ValueDrift columns {sorted(cols)} != input columns")
    if count is None:
        problems.append("no DriftedColumnsCount metric in the snapshot")
    undecided = [c for c, v in cols.items() if v["drifted"] is None]
    if undecided:
        problems.append(f"no known comparator for columns {undecided}")

    # Check 1: derived flags against DriftedColumnsCount.
    derived_count = sum(1 for v in cols.values() if v["drifted"])
    if count is not None and derived_count != count:
        problems.append(f"derived drifted count {derived_count} != DriftedColumnsCount {count}")
    if share is not None and cols and not math.isclose(derived_count / len(cols), share, rel_tol=0, abs_tol=1e-12):
        problems.append(f"derived share {derived_count / len(cols)} != DriftedColumnsCount share {share}")

    # Check 2: derived flags against Evidently's own per-column flags (private, best effort).
    own_dataset_drift = None
    own_check = "unavailable"
    try:
        legacy = snapshot.context._legacy_metrics
        per_col_checked = 0
        for res, _widgets in legacy.values():
            if hasattr(res, "dataset_drift") and own_dataset_drift is None:
                own_dataset_drift = bool(res.dataset_drift)
            for col, d in (getattr(res, "drift_by_columns", None) or {}).items():
                mine = cols.get(col)
                if mine is None:
                    continue
                per_col_checked += 1
                if bool(d.drift_detected) != mine["drifted"]:
                    problems.append(f"{col}: derived drifted={mine['drifted']} but Evidently says {d.drift_detected}")
                if not math.isclose(float(d.drift_score), mine["score"], rel_tol=1e-12, abs_tol=1e-15):
                    problems.append(f"{col}: ValueDrift score {mine['score']} != DataDriftTable score {d.drift_score}")
        if per_col_checked:
            own_check = f"matched Evidently's drift_detected for {per_col_checked} columns"
    except AttributeError:
        pass

    dataset_drift = bool(share is not None and share >= DRIFT_SHARE)
    if own_dataset_drift is not None and own_dataset_drift != dataset_drift:
        problems.append(
            f"share >= {DRIFT_SHARE} gives {dataset_drift} but Evidently's dataset_drift is {own_dataset_drift}")

    result = {
        "evidently_version": evidently.__version__,
        "rows_reference": int(ref_df.shape[0]),
        "rows_current": int(cur_df.shape[0]),
        "columns": {
            c: {k: cols[c][k] for k in ("score", "method", "threshold", "drifted")} for c in names if c in cols
        },
        "drifted_columns": count,
        "share": share,
        "dataset_drift": dataset_drift,
        "drift_share": DRIFT_SHARE,
        "seconds_min": min(times),
        "seconds_median": statistics.median(times),
        "seconds_all": times,
        "cpu_seconds_all": cpu_times,
        "repeat": a.repeat,
        "warmup": warmup,
        "decision_source": "derived from ValueDrift score/method/threshold with Evidently's comparators; "
        "verified against DriftedColumnsCount and " + own_check,
        "versions": {"pandas": pd.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
        "warnings": seen_warnings,
        "network_attempts": _NETWORK_ATTEMPTS,
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    methods = sorted({v["method"] for v in cols.values()})
    print(
        f"evidently {evidently.__version__}: ref {ref_df.shape[0]}x{a.columns}, cur {cur_df.shape[0]}x{a.columns}, "
        f"{', '.join(methods)}; drifted {count}/{len(cols)} (share {share:.3f}, dataset drift {dataset_drift}); "
        f"report.run min {min(times):.3f}s median {statistics.median(times):.3f}s over {a.repeat}"
        f"{' after 1 warm-up' if warmup else ''}",
        file=sys.stderr,
    )
    for w, n in seen_warnings.items():
        print(f"  warning x{n}: {w}", file=sys.stderr)
    if problems:
        for p in problems:
            print(f"  MISMATCH: {p}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
