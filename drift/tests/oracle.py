"""The reference the drift statistics are checked against: Evidently's choice of test and its
decision rules, with every number computed by scipy/numpy (what Evidently calls).

Prints one JSON object per case: the reference and current values, the column kind, the test
override (if any) and what scipy/numpy give. Run by `cargo test -p switchyard-drift`.
"""
import json
import math
import sys

import numpy as np
from scipy import stats
from scipy.spatial import distance


def clean(values, kind):
    if kind == "numerical":
        return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    return [v for v in values if v is not None and not (isinstance(v, float) and not math.isfinite(v))]


def nunique(values):
    return len(set(values.tolist() if isinstance(values, np.ndarray) else values))


def counts(values):
    out = {}
    for v in (values.tolist() if isinstance(values, np.ndarray) else values):
        out[v] = out.get(v, 0) + 1
    return out


def default_test(ref, cur, kind):
    # evidently.legacy.calculations.stattests.registry._get_default_stattest
    n_values = nunique(list(ref) + list(cur))
    if len(ref) <= 1000:
        if kind == "numerical":
            if n_values <= 5:
                return "chisquare" if n_values > 2 else "z"
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if kind == "numerical":
        return "jensenshannon" if n_values <= 5 else "wasserstein"
    return "jensenshannon"


def binned(ref, cur, kind, fill):
    if kind == "numerical" and nunique(ref) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        r = np.histogram(ref, bins)[0] / len(ref)
        c = np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = list(set(list(ref)) | set(list(cur)))
        rc, cc = counts(ref), counts(cur)
        r = np.array([rc.get(k, 0) / len(ref) for k in keys])
        c = np.array([cc.get(k, 0) / len(cur) for k in keys])
    if fill:
        for a in (r, c):
            m = min(a[a != 0])
            np.place(a, a == 0, m / 10**6 if m <= 0.0001 else 0.0001)
    return r, c


def score(test, ref, cur, kind):
    if test == "ks":
        return float(stats.ks_2samp(ref, cur).pvalue)
    if test == "chisquare":
        keys = list(set(list(ref)) | set(list(cur)))
        rc, cc = counts(ref), counts(cur)
        k_norm = len(cur) / len(ref)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(stats.chisquare([cc.get(k, 0) for k in keys], [rc.get(k, 0) * k_norm for k in keys])[1])
    if test == "z":
        if nunique(ref) == 1 and nunique(cur) == 1 and list(ref)[0] == list(cur)[0]:
            return 1.0
        key = sorted(set(list(ref)) | set(list(cur)))[0]
        r = [0 if x == key else 1 for x in ref]
        c = [0 if x == key else 1 for x in cur]
        n1, n2 = len(r), len(c)
        p1, p2 = float(sum(r)) / n1, float(sum(c)) / n2
        P = float(p1 * n1 + p2 * n2) / (n1 + n2)
        z = (p1 - p2) / np.sqrt(P * (1 - P) * (1.0 / n1 + 1.0 / n2))
        return float(2 * (1 - stats.norm.cdf(np.abs(z))))
    if test == "wasserstein":
        return float(stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))
    if test == "jensenshannon":
        r, c = binned(ref, cur, kind, False)
        return float(distance.jensenshannon(r, c))
    if test == "psi":
        r, c = binned(ref, cur, kind, True)
        return float(np.sum((r - c) * np.log(r / c)))
    raise ValueError(test)


THRESHOLD = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1}


def drifted(test, s, t):
    if test == "ks":
        return s <= t
    if test in ("chisquare", "z"):
        return s < t
    return s >= t


def case(name, ref, cur, kind="numerical", test=None, threshold=None):
    r, c = clean(ref, kind), clean(cur, kind)
    out = {"name": name, "kind": kind, "reference": encode(ref), "current": encode(cur), "test": test,
           "threshold": threshold}
    if len(r) == 0 or len(c) == 0:
        out["expected"] = {"error": "empty reference" if len(r) == 0 else "empty current"}
    else:
        t = test or default_test(r, c, kind)
        th = THRESHOLD[t] if threshold is None else threshold
        s = score(t, r, c, kind)
        out["expected"] = {"test": t, "score": s, "threshold": th, "drifted": bool(drifted(t, s, th)),
                           "evidently_small": len(r) <= 1000}
    print(json.dumps(out))


def encode(values):
    # JSON has no NaN or infinity: they travel as strings and become non-finite numbers again.
    out = []
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            out.append(repr(v))
        elif isinstance(v, (float, np.floating)):
            out.append(float(v))
        elif isinstance(v, (int, np.integer)):
            out.append(float(v))
        else:
            out.append(v)
    return out


def main():
    rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 14)
    n = rng.standard_normal
    # Numerical, small reference: KS (exact), shifts from none to large, sizes equal and not.
    for shift in (0.0, 0.05, 0.2, 0.5, 2.0):
        case(f"ks shift {shift}", n(200), n(150) + shift)
        case(f"ks equal sizes shift {shift}", n(300), n(300) + shift)
    case("ks 1000 vs 10000", n(1000), n(10000) + 0.05)
    case("ks 1000 vs 10000 far", n(1000), n(10000) * 1.5 + 1.0)
    case("ks 999 vs 7", n(999), n(7))
    case("ks coprime sizes", n(997), n(991) + 0.1)
    case("ks ties", np.round(n(500) * 3), np.round(n(400) * 3 + 0.3))
    case("ks coarse ties", np.round(n(300), 1), np.round(n(300) + 0.1, 1))
    case("ks with nan and inf", list(n(100)) + [float("nan"), float("inf")], list(n(80) + 0.4) + [float("-inf")])
    # Few distinct numbers: chi-square (3-5 values) or z (2 values), constants.
    case("chi numbers", rng.integers(0, 4, 500).astype(float), rng.integers(0, 4, 300).astype(float))
    case("chi numbers skewed", rng.integers(0, 5, 500).astype(float),
         np.minimum(rng.integers(0, 8, 300), 4).astype(float))
    case("z numbers", rng.integers(0, 2, 400).astype(float), (rng.random(300) < 0.6).astype(float))
    case("z numbers far", rng.integers(0, 2, 400).astype(float), (rng.random(300) < 0.95).astype(float))
    case("constant equal", [3.0] * 50, [3.0] * 40)
    case("constant different", [3.0] * 50, [4.0] * 40)
    case("constant vs two", [3.0] * 50, [3.0] * 30 + [4.0] * 10)
    # Categorical.
    cats = np.array(["red", "green", "blue", "cyan"])
    case("chi categories", list(cats[rng.integers(0, 4, 600)]), list(cats[rng.integers(0, 4, 200)]), "categorical")
    case("chi categories shifted", list(cats[rng.integers(0, 4, 600)]),
         list(cats[np.minimum(rng.integers(0, 6, 200), 3)]), "categorical")
    case("chi unseen category", list(cats[rng.integers(0, 3, 600)]), list(cats[rng.integers(0, 4, 200)]),
         "categorical")
    case("z categories", list(cats[rng.integers(0, 2, 600)]), list(cats[(rng.random(250) < 0.45).astype(int)]),
         "categorical")
    case("categorical constant", ["a"] * 30, ["a"] * 10, "categorical")
    # Large reference: normalised Wasserstein, or Jensen-Shannon over values.
    for shift in (0.0, 0.05, 0.12, 0.5):
        case(f"wasserstein shift {shift}", n(5000), n(2000) + shift)
    case("wasserstein 100k vs 10k", n(100_000), n(10_000) * 1.1)
    case("wasserstein tiny spread", n(3000) * 1e-5, n(1000) * 1e-5 + 1e-6)
    case("wasserstein ties", np.round(n(4000) * 2), np.round(n(3000) * 2 + 0.2))
    case("js few numbers", rng.integers(0, 5, 3000).astype(float), rng.integers(0, 4, 800).astype(float))
    case("js categories", list(cats[rng.integers(0, 4, 2000)]), list(cats[np.minimum(rng.integers(0, 5, 900), 3)]),
         "categorical")
    case("js binary categories", list(cats[rng.integers(0, 2, 2000)]), list(cats[rng.integers(0, 2, 900)]),
         "categorical")
    # Overrides: PSI and Jensen-Shannon with Sturges bins (> 20 distinct reference values) or by
    # value; the other tests where they are not the default.
    for shift in (0.0, 0.1, 0.6):
        case(f"psi sturges shift {shift}", n(4000), n(1500) + shift, test="psi")
        case(f"js sturges shift {shift}", n(800), n(700) + shift, test="jensenshannon")
    case("psi empty bins", n(2000), n(300) * 0.3 + 3.0, test="psi")
    case("psi by value", np.round(rng.random(3000) * 10), np.round(rng.random(500) * 12), test="psi")
    case("psi categories", list(cats[rng.integers(0, 4, 2000)]), list(cats[rng.integers(0, 3, 900)]), "categorical",
         test="psi")
    case("js by value", np.round(rng.random(600) * 15), np.round(rng.random(400) * 15 + 2), test="jensenshannon")
    case("ks on a large reference", n(3000), n(1200) + 0.1, test="ks")
    case("wasserstein on a small reference", n(300), n(200) + 0.2, test="wasserstein")
    case("chisquare on a large reference", list(cats[rng.integers(0, 4, 2000)]), list(cats[rng.integers(0, 4, 700)]),
         "categorical", test="chisquare")
    case("z with its own threshold", rng.integers(0, 2, 400).astype(float), (rng.random(300) < 0.57).astype(float),
         test="z", threshold=0.2)
    case("ks with its own threshold", n(500), n(400) + 0.12, test="ks", threshold=0.5)
    # Nothing to test.
    case("empty current", list(n(50)), [float("nan")])
    case("empty reference", [], list(n(5)))


if __name__ == "__main__":
    main()
