"""The papers' qualitative claims, checked one by one against reported and reproduced values.

Every claim in `mld/report/paper_values.yaml` has an id; a check is a small function registered under
that id with `@claim_check(id)`. A check reads values through a `Values` lookup, so the same
function judges the paper's own numbers (a sanity check of the transcription and of the check)
and the reproduced ones. A claim without a registered check is reported as "not checked"; a check
whose inputs are missing reports "undetermined" and names what is missing. Nothing is dropped.

The verdicts and their noise model are `mld.report.stats`'s: holds / does not hold / undetermined, each
with the noise margin it had beside the paper's effect. An "equal" claim is an equivalence test
against the bound written beside it in paper_values.yaml (`equivalence`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Protocol

import numpy as np
import pandas as pd

from mld.report import stats
from mld.report.stats import FAILS, HOLDS, NOT_CHECKED, UNDETERMINED, Verdict, all_hold

NOISE_DEFINITION = stats.VERDICT_RULES


class MissingValue(LookupError):
    """A value a check needs is absent (run missing, infeasible, or not reported)."""


@dataclass(frozen=True)
class Estimate:
    """A value with its spread: seed mean/std/n when reproduced, one number when reported."""

    mean: float
    std: float | None = None
    n: int | None = None

    def __str__(self) -> str:
        if self.n is None:
            return f"{self.mean:g}"
        spread = "" if self.std is None or math.isnan(self.std) else f" ± {self.std:.2f}"
        return f"{self.mean:.2f}{spread} (n={self.n})"


class Values(Protocol):
    """What a check may ask of one side (the paper's or the reproduced values) of the tables."""

    side: str  # "paper" or "reproduced"

    def get(self, table_id: str, metric: str, **key: Any) -> Estimate:
        """One value by table, metric and row key; raises MissingValue when it is absent."""

    def difference(self, table_id: str, metric: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> Any:
        """a - b with its noise (`.difference`, an mld.report.stats.Difference) and the paper's a - b
        of the same rows (`.paper_effect`, None when not reported); MissingValue when absent."""

    def keys(self, table_id: str, **filters: Any) -> list[dict[str, Any]]:
        """The keys of this side's rows that match `filters`, in table order."""

    def infeasible(self, table_id: str, **key: Any) -> bool:
        """Whether the row could not be run (reproduced: status infeasible; paper: reported as NA)."""


ClaimCheck = Callable[[Values, Mapping[str, Any]], Verdict]
_CHECKS: dict[str, ClaimCheck] = {}


def claim_check(claim_id: str) -> Callable[[ClaimCheck], ClaimCheck]:
    """Register `function(values, claim)` as the check of the claim `claim_id` (ids as in paper_values.yaml)."""
    def register(function: ClaimCheck) -> ClaimCheck:
        if claim_id in _CHECKS:
            raise ValueError(f"claim {claim_id!r} has two checks: {_CHECKS[claim_id].__name__} and "
                             f"{function.__name__}")
        _CHECKS[claim_id] = function
        return function
    return register


def checked_claim_ids() -> list[str]:
    return sorted(_CHECKS)


def run_check(claim: Mapping[str, Any], values: Values) -> Verdict:
    """The verdict of one claim on one set of values; never raises for missing inputs."""
    check = _CHECKS.get(claim["id"])
    if check is None:
        return Verdict(NOT_CHECKED, f"no check is registered for claim id {claim['id']!r} in mld/report/claims.py")
    try:
        return check(values, claim)
    except MissingValue as missing:
        return Verdict(UNDETERMINED, f"missing {missing}")


CLAIM_COLUMNS = ["claim", "table", "text", "paper verdict", "paper evidence", "reproduced verdict",
                 "reproduced margin", "reproduced evidence"]


def evaluate_claims(claims: Iterable[Mapping[str, Any]], paper: Values, reproduced: Values) -> pd.DataFrame:
    """One row per claim: its verdict and evidence on the paper's values and on the reproduced ones."""
    rows = []
    for claim in claims:
        on_paper = run_check(claim, paper)
        on_reproduced = run_check(claim, reproduced)
        rows.append({"claim": claim["id"], "table": claim["table"], "text": claim["text"],
                     "paper verdict": on_paper.verdict, "paper evidence": on_paper.text,
                     "reproduced verdict": on_reproduced.verdict,
                     "reproduced margin": math.nan if on_reproduced.margin is None else on_reproduced.margin,
                     "reproduced evidence": on_reproduced.text})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# ---- the comparisons checks are made of ---------------------------------------------------------

def _holds(condition: bool) -> str:
    return HOLDS if condition else FAILS


def bound_of(claim: Mapping[str, Any]) -> float:
    """The equivalence bound written beside an "equal" claim in paper_values.yaml."""
    equivalence = claim.get("equivalence")
    if not equivalence:
        raise ValueError(f"claim {claim['id']!r} is an equality and needs `equivalence: {{bound, source}}` in "
                         "mld/report/paper_values.yaml")
    return float(equivalence["bound"])


def beats(values: Values, table: str, metric: str, better: Mapping[str, Any], worse: Mapping[str, Any],
          name: str, at_least: float = 0.0) -> Verdict:
    compared = values.difference(table, metric, better, worse)
    return stats.beats(compared.difference, name, at_least, compared.paper_effect)


def equal(values: Values, table: str, metric: str, a: Mapping[str, Any], b: Mapping[str, Any], name: str,
          claim: Mapping[str, Any]) -> Verdict:
    compared = values.difference(table, metric, a, b)
    verdict = stats.with_paper_effect(stats.equivalent(compared.difference, name, bound_of(claim)),
                                      compared.paper_effect)
    paper = "" if compared.paper_effect is None else f"; paper's difference {compared.paper_effect:+.2f}"
    return replace(verdict, text=verdict.text + paper)


def at_most(values: Values, table: str, metric: str, a: Mapping[str, Any], b: Mapping[str, Any], name: str,
            bound: float) -> Verdict:
    """a - b (a drop when a is the reference) is at most `bound`."""
    compared = values.difference(table, metric, a, b)
    verdict = stats.with_paper_effect(stats.at_most(compared.difference, name, bound), compared.paper_effect)
    paper = "" if compared.paper_effect is None else f"; paper's {compared.paper_effect:+.2f}"
    return replace(verdict, text=verdict.text + paper)


def log_ratio_error(numerator: Estimate, denominator: Estimate) -> float | None:
    """The standard error of log(numerator / denominator) from each measured side's spread over its
    replicates (timing rounds); a reported value (n None) counts as exact. None when a measured side
    has fewer than two replicates: no spread to judge the ratio by."""
    variance = 0.0
    for estimate in (numerator, denominator):
        if estimate.n is None:
            continue
        if estimate.n < 2 or estimate.std is None or math.isnan(estimate.std):
            return None
        variance += (estimate.std / estimate.mean) ** 2 / estimate.n
    return math.sqrt(variance)


def _ratio(numerator: Estimate, denominator: Estimate, what: str, bound: float, at_least: bool,
           timed: bool) -> Verdict:
    """Compare `numerator / denominator` with a bound. A cost ratio (FLOPs) is exact; a speed ratio
    (`timed`) is decided by its 95% interval over the timing rounds, undetermined while it straddles
    the bound or when there is a single round."""
    if denominator.mean <= 0 or numerator.mean <= 0:
        return Verdict(UNDETERMINED, f"{what}: {numerator} / {denominator} has a value that is not positive")
    ratio = numerator.mean / denominator.mean
    needs = f"needs {'>=' if at_least else '<='} {bound:g}"
    if not timed or numerator.n is None and denominator.n is None:  # a cost, or the paper's two numbers
        return Verdict(_holds(ratio >= bound if at_least else ratio <= bound),
                       f"{what}: {numerator} / {denominator} = {ratio:.3f} ({needs})")
    error = log_ratio_error(numerator, denominator)
    if error is None:
        return Verdict(UNDETERMINED, f"{what}: {numerator} / {denominator} = {ratio:.3f} ({needs}), from a single "
                                     "timing round: no spread to judge it by (measurements.options.rounds >= 2)")
    low, high = ratio * math.exp(-stats.Z_TWO_SIDED * error), ratio * math.exp(stats.Z_TWO_SIDED * error)
    return Verdict(_interval_verdict(low, high, bound, at_least),
                   f"{what}: {numerator} / {denominator} = {ratio:.3f}, 95% interval {low:.3f}-{high:.3f} "
                   f"over the timing rounds ({needs})")


def _interval_verdict(low: float, high: float, bound: float, at_least: bool) -> str:
    """Holds when the whole 95% interval [low, high] is on the claimed side of the bound, fails when
    it is wholly on the other side, else undetermined."""
    supports, contradicts = (low >= bound, high < bound) if at_least else (high <= bound, low > bound)
    return HOLDS if supports else FAILS if contradicts else UNDETERMINED


def ratio_at_least(numerator: Estimate, denominator: Estimate, what: str, minimum: float,
                   timed: bool = False) -> Verdict:
    return _ratio(numerator, denominator, what, minimum, at_least=True, timed=timed)


def ratio_at_most(numerator: Estimate, denominator: Estimate, what: str, maximum: float,
                  timed: bool = False) -> Verdict:
    return _ratio(numerator, denominator, what, maximum, at_least=False, timed=timed)


# ---- row selection by role (counts differ between the paper and the embedded default) ----------

def ranked(values: Values, table_id: str, column: str, **filters: Any) -> list[dict[str, Any]]:
    """This side's rows matching `filters` that have a number in `column`, smallest first."""
    rows = [row for row in values.keys(table_id, **filters)
            if isinstance(row.get(column), (int, float)) and not isinstance(row.get(column), bool)]
    if not rows:
        raise MissingValue(f"{table_id} rows {filters or ''} with a numeric {column!r}")
    return sorted(rows, key=lambda row: row[column])


def single(values: Values, table_id: str, **filters: Any) -> dict[str, Any]:
    rows = values.keys(table_id, **filters)
    if len(rows) != 1:
        raise MissingValue(f"{table_id} row {filters} ({len(rows)} rows)")
    return rows[0]


def _name(row: dict[str, Any]) -> str:
    return "/".join(f"{value}" for value in row.values() if value is not None) or "row"


# ---- the checks, one per claim id of mld/report/paper_values.yaml -------------------------------------

# "More than 1 mAP", "about 0.1 mAP", "10-20% FLOPs", "about 15% below GAP": the claims' own words,
# read as these thresholds.
GAP_IMPROVEMENT_MAP = 1.0
SMALL_DROP_MAP = 0.3          # "about 0.1", "only 0.1": at most a few tenths
SMALL_GAIN_MAP = 0.3          # stacked layers "gain little"
ZSL_GROUP_RELATIVE_DROP = 0.10  # "a small decrease": at most 10% of the full-decoding ZSL mAP
GROUP_FLOPS_OVERHEAD = 0.20   # "adds only 10-20% FLOPs"
FLAT_THROUGHPUT_RATIO = 0.9   # "nearly independent of the number of classes"
BELOW_GAP_RATIO = 0.75        # "about 15% below GAP": at least 75% of GAP's throughput
COLLAPSE_RATIO = 0.5          # the transformer-decoder's throughput "collapses": below half
SUPERLINEAR_SLOPE = 1.5       # log-log growth of self-attention time with classes (quadratic: 2)


@claim_check("attention_heads_beat_gap")
def _attention_heads_beat_gap(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table1_heads"
    gap = single(values, table, head="gap")
    full = ranked(values, table, "queries", head="ml_decoder")[-1]
    decoder = single(values, table, head="transformer_decoder")
    return all_hold([
        beats(values, table, "mAP", full, gap, f"ML-Decoder K={full['queries']} - GAP", GAP_IMPROVEMENT_MAP),
        beats(values, table, "mAP", decoder, gap, "transformer-decoder - GAP", GAP_IMPROVEMENT_MAP),
    ])


@claim_check("self_attention_redundant")
def _self_attention_redundant(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table1_heads"
    full = ranked(values, table, "queries", head="ml_decoder")[-1]
    decoder = single(values, table, head="transformer_decoder")
    return equal(values, table, "mAP", decoder, full,
                 f"transformer-decoder K={decoder['queries']} - ML-Decoder K={full['queries']}", claim)


@claim_check("group_decoding_small_cost")
def _group_decoding_small_cost(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table1_heads"
    rows = ranked(values, table, "queries", head="ml_decoder")
    if len(rows) < 2:
        raise MissingValue(f"{table}: a group-decoding ML-Decoder row beside the full one")
    group, full = rows[0], rows[-1]
    return at_most(values, table, "mAP", full, group, f"drop ML-Decoder K={full['queries']} - K={group['queries']}",
                   SMALL_DROP_MAP)


@claim_check("extreme_classification_scales")
def _extreme_classification_scales(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table2_extreme"
    gap_row = single(values, table, head="gap")
    decoder_row = single(values, table, head="transformer_decoder")
    rows = ranked(values, table, "queries", head="ml_decoder")
    gap_flops = values.get(table, "flops_g", **gap_row)
    infeasible = values.infeasible(table, **decoder_row)
    outcomes = [Verdict(_holds(infeasible), f"transformer-decoder {'is' if infeasible else 'is not'} infeasible")]
    cheapest = rows[0]
    outcomes.append(ratio_at_most(values.get(table, "flops_g", **cheapest), gap_flops,
                                  f"FLOPs of ML-Decoder K={cheapest['queries']} over GAP's", 1 + GROUP_FLOPS_OVERHEAD))
    outcomes += [beats(values, table, "mAP", row, gap_row, f"ML-Decoder K={row['queries']} - GAP") for row in rows]
    if len(rows) >= 3:
        full, middle, fewest = rows[-1], rows[-2], rows[0]
        outcomes.append(equal(values, table, "mAP", middle, full, f"K={middle['queries']} - K={full['queries']}",
                              claim))
        outcomes.append(at_most(values, table, "mAP", full, fewest, f"drop K={full['queries']} - K={fewest['queries']}",
                                SMALL_DROP_MAP))
    else:
        outcomes.append(Verdict(UNDETERMINED, "fewer than 3 ML-Decoder group counts to compare"))
    return all_hold(outcomes)


@claim_check("query_augmentations_help_zsl")
def _query_augmentations_help_zsl(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table3_query_aug"
    none, both = {"augmentation": "none"}, {"augmentation": "both"}
    alone = ("additive_noise", "random_query")
    outcomes = [beats(values, table, "mAP", {"augmentation": name}, none, f"ZSL {name} - none") for name in alone]
    outcomes += [beats(values, table, "mAP", both, {"augmentation": name}, f"ZSL both - {name}") for name in alone]
    if values.side == "paper":  # the paper states it in the text, with no per-row numbers
        outcomes.append(Verdict(HOLDS, "seen-class mAP unchanged: stated in the text (22.7 on NUS-WIDE)"))
    else:
        outcomes += [equal(values, table, "mAP_seen", {"augmentation": name}, none, f"seen-class mAP {name} - none",
                           claim) for name in (*alone, "both")]
    return all_hold(outcomes)


@claim_check("zsl_group_decoding_small_decrease")
def _zsl_group_decoding_small_decrease(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table4_zsl_groups"
    rows = ranked(values, table, "queries")
    if len(rows) < 2:
        raise MissingValue(f"{table}: a group-decoding row beside full decoding")
    full = values.get(table, "mAP", **rows[-1])
    return at_most(values, table, "mAP", rows[-1], rows[0],
                   f"drop full K={rows[-1]['queries']} - group K={rows[0]['queries']}",
                   ZSL_GROUP_RELATIVE_DROP * full.mean)


@claim_check("query_types_equal")
def _query_types_equal(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table7_query_types"
    rows = values.keys(table)
    if len(rows) < 2:
        raise MissingValue(f"{table}: at least two query types")
    return all_hold(equal(values, table, "mAP", a, b, f"{a['query_type']} - {b['query_type']}", claim)
                    for i, a in enumerate(rows) for b in rows[i + 1:])


@claim_check("zsl_needs_nlp_queries_and_head")
def _zsl_needs_nlp_queries_and_head(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table8_zsl_query_head"
    nlp = {"query_type": "nlp", "head_type": "nlp"}
    others = [row for row in values.keys(table) if (row["query_type"], row["head_type"]) != ("nlp", "nlp")]
    if not others:
        raise MissingValue(f"{table}: rows other than NLP queries with an NLP head")
    return all_hold(beats(values, table, "mAP", nlp, row,
                          f"NLP queries/NLP head - {row['query_type']} queries/{row['head_type']} head")
                    for row in others)


def _self_attention_growth(values: Values, rows: list[dict[str, Any]]) -> Verdict:
    """How the transformer-decoder's self-attention time grows with the class count: the slope of
    log time vs log classes between the fewest and the most classes (quadratic: 2), its interval
    from the timing rounds' spread."""
    fewest, most = rows[0]["classes"], rows[-1]["classes"]
    first, last = (values.get("module_timing", "time_ms", **row) for row in (rows[0], rows[-1]))
    if min(first.mean, last.mean, fewest) <= 0 or fewest == most:
        return Verdict(UNDETERMINED, "self-attention growth needs positive times at two class counts")
    span = math.log(most / fewest)
    slope = math.log(last.mean / first.mean) / span
    text = (f"transformer-decoder self-attention {first} -> {last} ms from {fewest} to {most} classes: "
            f"log-log slope {slope:.2f}")
    needs = f" (needs >= {SUPERLINEAR_SLOPE:g}; quadratic is 2)"
    if first.n is None and last.n is None:  # the paper's numbers
        return Verdict(_holds(slope >= SUPERLINEAR_SLOPE), text + needs)
    error = log_ratio_error(last, first)  # of log(last / first): the slope's times the span
    if error is None:
        return Verdict(UNDETERMINED, text + ", from a single timing round: no spread to judge it by" + needs)
    low, high = slope - stats.Z_TWO_SIDED * error / span, slope + stats.Z_TWO_SIDED * error / span
    return Verdict(_interval_verdict(low, high, SUPERLINEAR_SLOPE, at_least=True),
                   text + f", 95% interval {low:.2f}-{high:.2f}" + needs)


@claim_check("throughput_independent_of_classes")
def _throughput_independent_of_classes(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table, metric = "table9_throughput", "inference_images_per_s"
    decoder = ranked(values, table, "classes", head="ml_decoder")
    baseline = ranked(values, table, "classes", head="transformer_decoder")
    gap = values.get(table, metric, **single(values, table, head="gap", classes=decoder[-1]["classes"]))
    outcomes = [
        ratio_at_least(values.get(table, metric, **decoder[-1]), values.get(table, metric, **decoder[0]),
                       f"ML-Decoder inference at {decoder[-1]['classes']} vs {decoder[0]['classes']} classes",
                       FLAT_THROUGHPUT_RATIO, timed=True),
        ratio_at_least(values.get(table, metric, **decoder[-1]), gap,
                       f"ML-Decoder vs GAP inference at {decoder[-1]['classes']} classes", BELOW_GAP_RATIO,
                       timed=True),
        ratio_at_most(values.get(table, metric, **baseline[-1]), values.get(table, metric, **baseline[0]),
                      f"transformer-decoder inference at {baseline[-1]['classes']} vs {baseline[0]['classes']} "
                      "classes", COLLAPSE_RATIO, timed=True),
    ]
    timing = "module_timing"
    attention = ranked(values, timing, "classes", head="transformer_decoder", module="self_attention")
    most = attention[-1]["classes"]
    self_time = values.get(timing, "time_ms", **attention[-1])
    for module in ("cross_attention", "mlp"):
        other = values.get(timing, "time_ms", head="transformer_decoder", classes=most, module=module)
        outcomes.append(ratio_at_least(self_time, other, f"at {most} classes self-attention over {module} time (ms)",
                                       1.0, timed=True))
    if len(attention) >= 2:
        outcomes.append(_self_attention_growth(values, attention))
    return all_hold(outcomes)


@claim_check("resolution_raises_map")
def _resolution_raises_map(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "resolution"
    rows = values.keys(table)
    backbones = sorted({row["backbone"] for row in rows}, key=lambda b: -sum(r["backbone"] == b for r in rows))
    if len(backbones) < 2:
        raise MissingValue(f"{table}: a base backbone at several resolutions and a larger one")
    base, larger = backbones[0], backbones[1]
    series = ranked(values, table, "resolution", backbone=base)
    outcomes = [beats(values, table, "mAP", high, low, f"{_name(high)} - {_name(low)}")
                for low, high in zip(series, series[1:])]
    top = single(values, table, backbone=larger)
    same = single(values, table, backbone=base, resolution=top["resolution"])
    outcomes.append(beats(values, table, "mAP", top, same, f"{_name(top)} - {_name(same)}"))
    return all_hold(outcomes)


@claim_check("stacked_layers_gain_little")
def _stacked_layers_gain_little(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "stacked_layers"
    rows = [row for row in ranked(values, table, "layers") if row["layers"] >= 1]
    if len(rows) < 2:
        raise MissingValue(f"{table}: decoders with 1 and more layers")
    flops = values.get(table, "flops_g", **rows[-1]).mean - values.get(table, "flops_g", **rows[0]).mean
    verdict = at_most(values, table, "mAP", rows[-1], rows[0], f"gain {rows[-1]['layers']} layers - 1 layer",
                      SMALL_GAIN_MAP)
    return replace(verdict, text=f"{verdict.text}, for {flops:+.3g} GFLOPs")


@claim_check("better_tradeoff_than_larger_backbone")
def _better_tradeoff_than_larger_backbone(values: Values, claim: Mapping[str, Any]) -> Verdict:
    """The ML-Decoder points lie above the GAP curve (GAP's mAP interpolated linearly in FLOPs; means)."""
    table = "figure5"
    curve = sorted((values.get(table, "flops_g", **row).mean, values.get(table, "mAP", **row).mean)
                   for row in values.keys(table, head="gap"))
    if len(curve) < 2:
        raise MissingValue(f"{table}: GAP points on at least two backbones")
    curve_flops, curve_map = zip(*curve)
    outcomes = []
    for row in values.keys(table, head="ml_decoder"):
        flops, score = values.get(table, "flops_g", **row).mean, values.get(table, "mAP", **row).mean
        if curve_flops[0] <= flops <= curve_flops[-1]:
            gap_score = float(np.interp(flops, curve_flops, curve_map))
            outcomes.append(Verdict(_holds(score > gap_score),
                                    f"ML-Decoder on {row['backbone']}: {score:.2f} mAP at {flops:.3g} G vs the GAP "
                                    f"curve's {gap_score:.2f} (seed means, no noise model)"))
    if not outcomes:
        raise MissingValue(f"{table}: an ML-Decoder point within the GAP curve's FLOPs range")
    return all_hold(outcomes)


@claim_check("single_label_gain")
def _single_label_gain(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "table13_single_label"
    gaps = values.keys(table, head="gap")
    if not gaps:
        raise MissingValue(f"{table}: GAP rows")
    return all_hold(beats(values, table, "top1", {**gap, "head": "ml_decoder"}, gap,
                          f"top-1 ML-Decoder - GAP ({gap['activation']})") for gap in gaps)


@claim_check("hsvlt_cross_scale_aggregation_helps")
def _hsvlt_cross_scale_aggregation_helps(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "hsvlt_ablation"
    rows = ranked(values, table, "value", ablation="num_scales")
    if len(rows) < 2:
        raise MissingValue(f"{table}: HSVLT with several numbers of scales")
    return all_hold(beats(values, table, "mAP", rows[-1], row, f"{rows[-1]['value']} scales - {row['value']} scales")
                    for row in rows[:-1])


@claim_check("hsvlt_joint_update_beats_attention")
def _hsvlt_joint_update_beats_attention(values: Values, claim: Mapping[str, Any]) -> Verdict:
    table = "hsvlt_ablation"
    full = ranked(values, table, "value", ablation="num_scales")[-1]
    plain = single(values, table, ablation="interaction")
    return beats(values, table, "mAP", full, plain,
                 f"HSVLT ({full['value']} scales, joint update) - HSVLT with {plain['value']}")


@claim_check("hsvlt_fewer_parameters_and_flops")
def _hsvlt_fewer_parameters_and_flops(values: Values, claim: Mapping[str, Any]) -> Verdict:
    """Against ML-Decoder on the same backbone and dataset: the earlier method the suite has."""
    table = "hsvlt_heads"
    outcomes = []
    for row in values.keys(table, head="hsvlt"):
        other = {**row, "head": "ml_decoder"}
        for metric in ("params_m", "flops_g"):
            ours, theirs = values.get(table, metric, **row), values.get(table, metric, **other)
            outcomes.append(Verdict(_holds(ours.mean < theirs.mean),
                                    f"{metric} on {row['dataset']}: HSVLT {ours} vs ML-Decoder {theirs}"))
    if not outcomes:
        raise MissingValue(f"{table}: HSVLT rows")
    return all_hold(outcomes)
