"""A/B readout for link and campaign variants.

A person's arm is the arm value on their first exposure event in [from, to); they convert
if they have a conversion event at or after that exposure (before ``to``). Each arm is
compared with the control by a two-proportion z-test (pooled standard error) and a
confidence interval for the difference in rates (unpooled, Wald).
"""

from __future__ import annotations

import math

from liebian.analytics.common import require_events
from liebian.analytics.filters import breakdown_expr
from liebian.analytics.schemas import AbArm, AbQuery, AbResult
from liebian.analytics.sql import Sql
from liebian.events.store.base import EventStore

PEEKING_WARNING = (
    "Reading a test before it reaches its planned sample inflates false positives: fix the "
    "sample size in advance and decide once it is reached."
)


def ab_readout(store: EventStore, workspace_id: str, q: AbQuery) -> AbResult:
    require_events(store, workspace_id, [q.exposure_event, q.conversion_event])
    sql = Sql(store)
    arm = breakdown_expr(sql, q.arm_field)
    rng = f"e.ts >= {sql.p(q.from_)} AND e.ts < {sql.p(q.to)}"
    first_key = f"({sql.ms('e.ts')}, e.event_id)"
    exp_sel = f"{sql.person()} AS person, min(e.ts) AS t0, {sql.arg_min(arm, first_key)} AS arm"
    exp_where = f"e.event = {sql.p(q.exposure_event)} AND NOT e.is_bot AND {rng}"
    conv_sel = f"{sql.person()} AS person, e.ts AS ts"
    conv_where = f"e.event = {sql.p(q.conversion_event)} AND {rng}"
    text = (
        f"WITH expo AS ({sql.events_with_person(workspace_id, exp_sel, exp_where)}"
        " GROUP BY person),"
        f" conv AS ({sql.events_with_person(workspace_id, conv_sel, conv_where)}),"
        " hit AS (SELECT DISTINCT x.person AS person FROM expo x INNER JOIN conv c"
        " ON c.person = x.person WHERE c.ts >= x.t0)"
        " SELECT x.arm, count(*) AS exposed,"
        f" {sql.count_if('x.person IN (SELECT person FROM hit)')} AS converted"
        " FROM expo x WHERE x.arm <> '' GROUP BY x.arm ORDER BY x.arm"
    )
    counts = [(str(a), int(n), int(c)) for a, n, c in sql.run(text)]
    return readout(counts, q)


def readout(counts: list[tuple[str, int, int]], q: AbQuery) -> AbResult:
    """The statistics, apart from the SQL so they can be checked on plain numbers."""
    warnings: list[str] = []
    if not counts:
        return AbResult(control=None, arms=[], sufficient_sample=False, warnings=["no exposures"])
    by_arm = {a: (n, c) for a, n, c in counts}
    # Default control: the arm with the most exposures (ties: the first by name).
    busiest = sorted(counts, key=lambda t: (-t[1], t[0]))[0][0]
    control = q.control if q.control in by_arm else busiest
    if q.control and q.control not in by_arm:
        warnings.append(f"control arm {q.control!r} has no exposures; using {control!r}")
    n0, c0 = by_arm[control]
    p0 = c0 / n0
    # Imported here: scipy.stats costs ~70 MB resident, which a redirect server should not
    # carry for a report that is rarely run.
    from scipy.stats import norm

    zcrit = float(norm.ppf(1 - (1 - q.confidence) / 2))
    small = [a for a, n, c in counts if n < q.min_sample]
    sufficient = not small
    if small:
        warnings.append(
            f"arms below the minimum sample of {q.min_sample} per arm: {', '.join(small)};"
            " the comparison is not reliable yet"
        )
    if q.planned_sample is None or min(n for _, n, _ in counts) < q.planned_sample:
        warnings.append(PEEKING_WARNING)
    arms = []
    for a, n, c in counts:
        p = c / n
        row = AbArm(arm=a, exposed=n, converted=c, rate=round(p, 6))
        if a != control:
            pooled = (c + c0) / (n + n0)
            se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / n0))
            se = math.sqrt(p * (1 - p) / n + p0 * (1 - p0) / n0)
            diff = p - p0
            z = diff / se_pooled if se_pooled else 0.0
            pv = float(2 * norm.sf(abs(z)))
            row.diff_vs_control = round(diff, 6)
            row.ci_low = round(diff - zcrit * se, 6)
            row.ci_high = round(diff + zcrit * se, 6)
            row.z = round(z, 6)
            row.p_value = round(pv, 6)
            row.significant = sufficient and pv < 1 - q.confidence
        arms.append(row)
    return AbResult(control=control, arms=arms, sufficient_sample=sufficient, warnings=warnings)
