"""The papers' qualitative claims, checked one by one against reported and reproduced values.

Every claim in `mld/paper_values.yaml` has an id; a check is a small function registered under
that id with `@claim_check(id)`. A check reads values through a `Values` lookup, so the same
function judges the paper's own numbers (a sanity check of the transcription and of the check)
and the reproduced ones. A claim without a registered check is reported as "not checked"; a check
whose inputs are missing reports "undetermined" and names what is missing. Nothing is dropped.

"Within seed noise" is defined once, in `noise_margin`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

import numpy as np
import pandas as pd

HOLDS = "holds"
FAILS = "does not hold"
UNDETERMINED = "undetermined"
NOT_CHECKED = "not checked"

# The papers print (mostly) one decimal: a reported value stands for an interval of +-0.05 around
# it, which the noise margin treats as that value's standard error.
REPORTED_STANDARD_ERROR = 0.05
# The margin is this many standard errors of the difference (about a 95% interval).
NOISE_STANDARD_ERRORS = 2.0

NOISE_DEFINITION = (
    f"Two values agree within seed noise when their difference is at most {NOISE_STANDARD_ERRORS:g} x "
    "the standard error of the difference, sqrt(se_a^2 + se_b^2), where a reproduced value's standard "
    "error is its seed standard deviation / sqrt(n) (needs n >= 2 seeds; with fewer the verdict is "
    f"undetermined) and a reported value's is {REPORTED_STANDARD_ERROR:g} (half of the last printed "
    "digit). \"A beats B\" means the difference exceeds that margin; a claim with a stated threshold "
    "(\"by more than 1 mAP\", \"at most 0.3 mAP\") compares the difference of the means with it.")


class MissingValue(LookupError):
    """A value a check needs is absent (run missing, infeasible, or not reported)."""


@dataclass(frozen=True)
class Estimate:
    """A value with its uncertainty: seed mean/std/n when reproduced, one number when reported."""

    mean: float
    std: float | None = None
    n: int | None = None

    @property
    def reported(self) -> bool:
        return self.n is None

    @property
    def standard_error(self) -> float | None:
        if self.reported:
            return REPORTED_STANDARD_ERROR
        if self.n < 2 or self.std is None or math.isnan(self.std):
            return None
        return self.std / math.sqrt(self.n)

    def __str__(self) -> str:
        if self.reported:
            return f"{self.mean:g}"
        spread = "" if self.std is None or math.isnan(self.std) else f" ± {self.std:.2f}"
        return f"{self.mean:.2f}{spread} (n={self.n})"


def noise_margin(a: Estimate, b: Estimate) -> float | None:
    """The seed-noise margin of `a - b`; None when either side has too few seeds to know it."""
    errors = (a.standard_error, b.standard_error)
    if None in errors:
        return None
    return NOISE_STANDARD_ERRORS * math.hypot(*errors)


@dataclass(frozen=True)
class Outcome:
    verdict: str
    evidence: str


class Values(Protocol):
    """What a check may ask of one side (the paper's or the reproduced values) of the tables."""

    def get(self, table_id: str, metric: str, **key: Any) -> Estimate:
        """One value by table, metric and row key; raises MissingValue when it is absent."""

    def keys(self, table_id: str, **filters: Any) -> list[dict[str, Any]]:
        """The keys of this side's rows that match `filters`, in table order."""

    def infeasible(self, table_id: str, **key: Any) -> bool:
        """Whether the row could not be run (reproduced: status infeasible; paper: reported as NA)."""


ClaimCheck = Callable[[Values], Outcome]
_CHECKS: dict[str, ClaimCheck] = {}


def claim_check(claim_id: str) -> Callable[[ClaimCheck], ClaimCheck]:
    """Register `function` as the check of the claim `claim_id` (ids as in paper_values.yaml)."""
    def register(function: ClaimCheck) -> ClaimCheck:
        if claim_id in _CHECKS:
            raise ValueError(f"claim {claim_id!r} has two checks: {_CHECKS[claim_id].__name__} and "
                             f"{function.__name__}")
        _CHECKS[claim_id] = function
        return function
    return register


def checked_claim_ids() -> list[str]:
    return sorted(_CHECKS)


def run_check(claim_id: str, values: Values) -> Outcome:
    """The verdict of one claim on one set of values; never raises for missing inputs."""
    check = _CHECKS.get(claim_id)
    if check is None:
        return Outcome(NOT_CHECKED, f"no check is registered for claim id {claim_id!r} in mld/claims.py")
    try:
        return check(values)
    except MissingValue as missing:
        return Outcome(UNDETERMINED, f"missing {missing}")


def evaluate_claims(claims: Iterable[Mapping[str, Any]], paper: Values, reproduced: Values) -> pd.DataFrame:
    """One row per claim: its verdict and evidence on the paper's values and on the reproduced ones."""
    rows = []
    for claim in claims:
        on_paper = run_check(claim["id"], paper)
        on_reproduced = run_check(claim["id"], reproduced)
        rows.append({"claim": claim["id"], "table": claim["table"], "text": claim["text"],
                     "paper verdict": on_paper.verdict, "paper evidence": on_paper.evidence,
                     "reproduced verdict": on_reproduced.verdict,
                     "reproduced evidence": on_reproduced.evidence})
    columns = ["claim", "table", "text", "paper verdict", "paper evidence", "reproduced verdict",
               "reproduced evidence"]
    return pd.DataFrame(rows, columns=columns)


# ---- the comparisons checks are made of ---------------------------------------------------------

def _verdict(condition: bool) -> str:
    return HOLDS if condition else FAILS


def _margin_text(margin: float) -> str:
    return f"noise margin {margin:.2f}"


def beats(better: Estimate, worse: Estimate, better_name: str, worse_name: str,
          by_more_than: float = 0.0) -> Outcome:
    """`better` exceeds `worse`: beyond seed noise, and by more than `by_more_than` when given."""
    difference = better.mean - worse.mean
    margin = noise_margin(better, worse)
    text = f"{better_name} {better} vs {worse_name} {worse}: difference {difference:+.2f}"
    if margin is None:
        return Outcome(UNDETERMINED, f"{text}; fewer than 2 seeds, seed noise unknown")
    holds = difference > margin and difference > by_more_than
    threshold = f", threshold {by_more_than:g}" if by_more_than else ""
    return Outcome(_verdict(holds), f"{text} ({_margin_text(margin)}{threshold})")


def agree(a: Estimate, b: Estimate, a_name: str, b_name: str) -> Outcome:
    """`a` and `b` agree within seed noise (see NOISE_DEFINITION)."""
    difference = a.mean - b.mean
    margin = noise_margin(a, b)
    text = f"{a_name} {a} vs {b_name} {b}: difference {difference:+.2f}"
    if margin is None:
        return Outcome(UNDETERMINED, f"{text}; fewer than 2 seeds, seed noise unknown")
    return Outcome(_verdict(abs(difference) <= margin), f"{text} ({_margin_text(margin)})")


def drops_at_most(reference: Estimate, reduced: Estimate, reference_name: str, reduced_name: str,
                  tolerance: float) -> Outcome:
    """`reduced` is lower than `reference` by at most `tolerance` (or not lower at all)."""
    drop = reference.mean - reduced.mean
    text = f"{reference_name} {reference} vs {reduced_name} {reduced}: drop {drop:+.2f}"
    return Outcome(_verdict(drop <= tolerance), f"{text} (allowed {tolerance:.3g})")


def all_hold(outcomes: Iterable[Outcome]) -> Outcome:
    """Several sub-comparisons that must all hold: fails if any fails, else undetermined if any is."""
    outcomes = list(outcomes)
    verdicts = {outcome.verdict for outcome in outcomes}
    verdict = FAILS if FAILS in verdicts else UNDETERMINED if UNDETERMINED in verdicts else HOLDS
    return Outcome(verdict, "; ".join(f"[{o.verdict}] {o.evidence}" for o in outcomes))


def _ratio(numerator: Estimate, denominator: Estimate, what: str, bound: float, at_least: bool) -> Outcome:
    """Compare `numerator / denominator` with a bound (speed and cost ratios: means, no seed noise)."""
    if denominator.mean <= 0:
        return Outcome(UNDETERMINED, f"{what}: the denominator {denominator} is not positive")
    ratio = numerator.mean / denominator.mean
    holds = ratio >= bound if at_least else ratio <= bound
    return Outcome(_verdict(holds), f"{what}: {numerator} / {denominator} = {ratio:.3f} "
                                    f"(needs {'>=' if at_least else '<='} {bound:g})")


def ratio_at_least(numerator: Estimate, denominator: Estimate, what: str, minimum: float) -> Outcome:
    return _ratio(numerator, denominator, what, minimum, at_least=True)


def ratio_at_most(numerator: Estimate, denominator: Estimate, what: str, maximum: float) -> Outcome:
    return _ratio(numerator, denominator, what, maximum, at_least=False)


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


# ---- the checks, one per claim id of mld/paper_values.yaml -------------------------------------

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
def _attention_heads_beat_gap(values: Values) -> Outcome:
    table = "table1_heads"
    gap = values.get(table, "mAP", **single(values, table, head="gap"))
    full = ranked(values, table, "queries", head="ml_decoder")[-1]
    decoder = single(values, table, head="transformer_decoder")
    return all_hold([
        beats(values.get(table, "mAP", **full), gap, f"ML-Decoder K={full['queries']}", "GAP", GAP_IMPROVEMENT_MAP),
        beats(values.get(table, "mAP", **decoder), gap, "transformer-decoder", "GAP", GAP_IMPROVEMENT_MAP),
    ])


@claim_check("self_attention_redundant")
def _self_attention_redundant(values: Values) -> Outcome:
    table = "table1_heads"
    full = ranked(values, table, "queries", head="ml_decoder")[-1]
    decoder = single(values, table, head="transformer_decoder")
    return agree(values.get(table, "mAP", **decoder), values.get(table, "mAP", **full),
                 f"transformer-decoder K={decoder['queries']}", f"ML-Decoder K={full['queries']}")


@claim_check("group_decoding_small_cost")
def _group_decoding_small_cost(values: Values) -> Outcome:
    table = "table1_heads"
    rows = ranked(values, table, "queries", head="ml_decoder")
    if len(rows) < 2:
        raise MissingValue(f"{table}: a group-decoding ML-Decoder row beside the full one")
    group, full = rows[0], rows[-1]
    return drops_at_most(values.get(table, "mAP", **full), values.get(table, "mAP", **group),
                         f"ML-Decoder K={full['queries']}", f"K={group['queries']}", SMALL_DROP_MAP)


@claim_check("extreme_classification_scales")
def _extreme_classification_scales(values: Values) -> Outcome:
    table = "table2_extreme"
    gap_row = single(values, table, head="gap")
    decoder_row = single(values, table, head="transformer_decoder")
    rows = ranked(values, table, "queries", head="ml_decoder")
    gap = values.get(table, "mAP", **gap_row)
    gap_flops = values.get(table, "flops_g", **gap_row)
    infeasible = values.infeasible(table, **decoder_row)
    outcomes = [Outcome(_verdict(infeasible), f"transformer-decoder {'is' if infeasible else 'is not'} infeasible")]
    cheapest = rows[0]
    outcomes.append(ratio_at_most(values.get(table, "flops_g", **cheapest), gap_flops,
                                  f"FLOPs of ML-Decoder K={cheapest['queries']} over GAP's", 1 + GROUP_FLOPS_OVERHEAD))
    outcomes += [beats(values.get(table, "mAP", **row), gap, f"ML-Decoder K={row['queries']}", "GAP") for row in rows]
    if len(rows) >= 3:
        full, middle, fewest = rows[-1], rows[-2], rows[0]
        full_map = values.get(table, "mAP", **full)
        outcomes.append(agree(values.get(table, "mAP", **middle), full_map, f"K={middle['queries']}",
                              f"K={full['queries']}"))
        outcomes.append(drops_at_most(full_map, values.get(table, "mAP", **fewest), f"K={full['queries']}",
                                      f"K={fewest['queries']}", SMALL_DROP_MAP))
    else:
        outcomes.append(Outcome(UNDETERMINED, "fewer than 3 ML-Decoder group counts to compare"))
    return all_hold(outcomes)


@claim_check("query_augmentations_help_zsl")
def _query_augmentations_help_zsl(values: Values) -> Outcome:
    table = "table3_query_aug"

    def zsl(augmentation: str) -> Estimate:
        return values.get(table, "mAP", augmentation=augmentation)

    none, both = zsl("none"), zsl("both")
    alone = ("additive_noise", "random_query")
    outcomes = [beats(zsl(name), none, name, "none") for name in alone]
    outcomes += [beats(both, zsl(name), "both", name) for name in alone]
    result = all_hold(outcomes)
    return Outcome(result.verdict, result.evidence + "; the seen-class part is not in the table and not checked")


@claim_check("zsl_group_decoding_small_decrease")
def _zsl_group_decoding_small_decrease(values: Values) -> Outcome:
    table = "table4_zsl_groups"
    rows = ranked(values, table, "queries")
    if len(rows) < 2:
        raise MissingValue(f"{table}: a group-decoding row beside full decoding")
    full = values.get(table, "mAP", **rows[-1])
    return drops_at_most(full, values.get(table, "mAP", **rows[0]), f"full K={rows[-1]['queries']}",
                         f"group K={rows[0]['queries']}", ZSL_GROUP_RELATIVE_DROP * full.mean)


@claim_check("query_types_equal")
def _query_types_equal(values: Values) -> Outcome:
    table = "table7_query_types"
    rows = values.keys(table)
    if len(rows) < 2:
        raise MissingValue(f"{table}: at least two query types")
    estimates = {row["query_type"]: values.get(table, "mAP", **row) for row in rows}
    names = list(estimates)
    return all_hold(agree(estimates[a], estimates[b], a, b)
                    for i, a in enumerate(names) for b in names[i + 1:])


@claim_check("zsl_needs_nlp_queries_and_head")
def _zsl_needs_nlp_queries_and_head(values: Values) -> Outcome:
    table = "table8_zsl_query_head"
    nlp = values.get(table, "mAP", query_type="nlp", head_type="nlp")
    others = [row for row in values.keys(table) if (row["query_type"], row["head_type"]) != ("nlp", "nlp")]
    if not others:
        raise MissingValue(f"{table}: rows other than NLP queries with an NLP head")
    return all_hold(beats(nlp, values.get(table, "mAP", **row), "NLP queries/NLP head",
                          f"{row['query_type']} queries/{row['head_type']} head") for row in others)


def _self_attention_growth(values: Values, rows: list[dict[str, Any]]) -> Outcome:
    """How the transformer-decoder's self-attention time grows with the class count: the slope of
    log time vs log classes between the fewest and the most classes (quadratic: 2)."""
    fewest, most = rows[0]["classes"], rows[-1]["classes"]
    first, last = (values.get("module_timing", "time_ms", **row) for row in (rows[0], rows[-1]))
    if min(first.mean, last.mean, fewest) <= 0 or fewest == most:
        return Outcome(UNDETERMINED, "self-attention growth needs positive times at two class counts")
    slope = math.log(last.mean / first.mean) / math.log(most / fewest)
    return Outcome(_verdict(slope >= SUPERLINEAR_SLOPE),
                   f"transformer-decoder self-attention {first} -> {last} ms from {fewest} to {most} classes: "
                   f"log-log slope {slope:.2f} (needs >= {SUPERLINEAR_SLOPE:g}; quadratic is 2)")


@claim_check("throughput_independent_of_classes")
def _throughput_independent_of_classes(values: Values) -> Outcome:
    table, metric = "table9_throughput", "inference_images_per_s"
    decoder = ranked(values, table, "classes", head="ml_decoder")
    baseline = ranked(values, table, "classes", head="transformer_decoder")
    gap = values.get(table, metric, **single(values, table, head="gap", classes=decoder[-1]["classes"]))
    outcomes = [
        ratio_at_least(values.get(table, metric, **decoder[-1]), values.get(table, metric, **decoder[0]),
                       f"ML-Decoder inference at {decoder[-1]['classes']} vs {decoder[0]['classes']} classes",
                       FLAT_THROUGHPUT_RATIO),
        ratio_at_least(values.get(table, metric, **decoder[-1]), gap,
                       f"ML-Decoder vs GAP inference at {decoder[-1]['classes']} classes", BELOW_GAP_RATIO),
        ratio_at_most(values.get(table, metric, **baseline[-1]), values.get(table, metric, **baseline[0]),
                      f"transformer-decoder inference at {baseline[-1]['classes']} vs {baseline[0]['classes']} "
                      "classes", COLLAPSE_RATIO),
    ]
    timing = "module_timing"
    attention = ranked(values, timing, "classes", head="transformer_decoder", module="self_attention")
    most = attention[-1]["classes"]
    self_time = values.get(timing, "time_ms", **attention[-1])
    for module in ("cross_attention", "mlp"):
        other = values.get(timing, "time_ms", head="transformer_decoder", classes=most, module=module)
        outcomes.append(Outcome(_verdict(self_time.mean > other.mean),
                                f"at {most} classes self-attention {self_time} ms vs {module} {other} ms"))
    if len(attention) >= 2:
        outcomes.append(_self_attention_growth(values, attention))
    return all_hold(outcomes)


@claim_check("resolution_raises_map")
def _resolution_raises_map(values: Values) -> Outcome:
    table = "resolution"
    rows = values.keys(table)
    backbones = sorted({row["backbone"] for row in rows}, key=lambda b: -sum(r["backbone"] == b for r in rows))
    if len(backbones) < 2:
        raise MissingValue(f"{table}: a base backbone at several resolutions and a larger one")
    base, larger = backbones[0], backbones[1]
    series = ranked(values, table, "resolution", backbone=base)
    outcomes = [beats(values.get(table, "mAP", **high), values.get(table, "mAP", **low), _name(high), _name(low))
                for low, high in zip(series, series[1:])]
    top = single(values, table, backbone=larger)
    same = single(values, table, backbone=base, resolution=top["resolution"])
    outcomes.append(beats(values.get(table, "mAP", **top), values.get(table, "mAP", **same), _name(top), _name(same)))
    return all_hold(outcomes)


@claim_check("stacked_layers_gain_little")
def _stacked_layers_gain_little(values: Values) -> Outcome:
    table = "stacked_layers"
    rows = [row for row in ranked(values, table, "layers") if row["layers"] >= 1]
    if len(rows) < 2:
        raise MissingValue(f"{table}: decoders with 1 and more layers")
    one, most = values.get(table, "mAP", **rows[0]), values.get(table, "mAP", **rows[-1])
    gain = most.mean - one.mean
    flops = values.get(table, "flops_g", **rows[-1]).mean - values.get(table, "flops_g", **rows[0]).mean
    return Outcome(_verdict(gain <= SMALL_GAIN_MAP),
                   f"{rows[-1]['layers']} layers {most} vs 1 layer {one}: gain {gain:+.2f} mAP for "
                   f"{flops:+.2f} GFLOPs (allowed gain {SMALL_GAIN_MAP:g})")


@claim_check("better_tradeoff_than_larger_backbone")
def _better_tradeoff_than_larger_backbone(values: Values) -> Outcome:
    """The ML-Decoder points lie above the GAP curve (GAP's mAP interpolated linearly in FLOPs)."""
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
            outcomes.append(Outcome(_verdict(score > gap_score),
                                    f"ML-Decoder on {row['backbone']}: {score:.2f} mAP at {flops:.2f} G vs the GAP "
                                    f"curve's {gap_score:.2f}"))
    if not outcomes:
        raise MissingValue(f"{table}: an ML-Decoder point within the GAP curve's FLOPs range")
    return all_hold(outcomes)


@claim_check("single_label_gain")
def _single_label_gain(values: Values) -> Outcome:
    table = "table13_single_label"
    gaps = values.keys(table, head="gap")
    if not gaps:
        raise MissingValue(f"{table}: GAP rows")
    return all_hold(beats(values.get(table, "top1", **{**gap, "head": "ml_decoder"}), values.get(table, "top1", **gap),
                          f"ML-Decoder ({gap['activation']})", f"GAP ({gap['activation']})") for gap in gaps)


@claim_check("hsvlt_cross_scale_aggregation_helps")
def _hsvlt_cross_scale_aggregation_helps(values: Values) -> Outcome:
    table = "hsvlt_ablation"
    rows = ranked(values, table, "value", ablation="num_scales")
    if len(rows) < 2:
        raise MissingValue(f"{table}: HSVLT with several numbers of scales")
    full = values.get(table, "mAP", **rows[-1])
    return all_hold(beats(full, values.get(table, "mAP", **row), f"{rows[-1]['value']} scales",
                          f"{row['value']} scales") for row in rows[:-1])


@claim_check("hsvlt_joint_update_beats_attention")
def _hsvlt_joint_update_beats_attention(values: Values) -> Outcome:
    table = "hsvlt_ablation"
    full = ranked(values, table, "value", ablation="num_scales")[-1]
    plain = single(values, table, ablation="interaction")
    return beats(values.get(table, "mAP", **full), values.get(table, "mAP", **plain),
                 f"HSVLT ({full['value']} scales, joint update)", f"HSVLT with {plain['value']}")


@claim_check("hsvlt_fewer_parameters_and_flops")
def _hsvlt_fewer_parameters_and_flops(values: Values) -> Outcome:
    """Against ML-Decoder on the same backbone and dataset: the earlier method the suite has."""
    table = "hsvlt_heads"
    outcomes = []
    for row in values.keys(table, head="hsvlt"):
        other = {**row, "head": "ml_decoder"}
        for metric in ("params_m", "flops_g"):
            ours, theirs = values.get(table, metric, **row), values.get(table, metric, **other)
            outcomes.append(Outcome(_verdict(ours.mean < theirs.mean),
                                    f"{metric} on {row['dataset']}: HSVLT {ours} vs ML-Decoder {theirs}"))
    if not outcomes:
        raise MissingValue(f"{table}: HSVLT rows")
    return all_hold(outcomes)
