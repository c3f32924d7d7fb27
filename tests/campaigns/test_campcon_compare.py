"""The dashboard's comparison with the workspace's earlier campaigns of the same type: the same
figures, side by side, computed with the same definitions (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fission_helpers import GROUP_BUY, INVITE, create, join

ONE_INVITE = {**INVITE, "new_users_only": False, "risk": {"mode": "allow"}}


def test_compare_with_earlier_campaigns_of_the_same_type(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    first = create(client, owner, "invite", ONE_INVITE, name="第一期")
    a = join(client, owner, first, "a1").json()
    join(client, owner, first, "a2", referrer_code=a["invite_code"])
    create(client, owner, "group_buy", GROUP_BUY, name="拼团")  # another type: not compared
    second = create(client, owner, "invite", ONE_INVITE, name="第二期")
    for who in ("b1", "b2", "b3"):
        join(client, owner, second, who)
    runtime.flush_events()

    d = client.get(f"/api/v1/campaigns/{second}/dashboard", headers=owner).json()
    rows = {r["name"]: r for r in d["compare"]}
    assert list(rows) == ["第二期", "第一期"]
    assert rows["第二期"]["current"] and not rows["第一期"]["current"]
    # This campaign's row is its own totals, by the same definitions.
    for key in ("participants", "friend_joins", "k_factor", "reward_cost", "share_rate"):
        assert rows["第二期"][key] == d["totals"][key], key
    assert (rows["第一期"]["participants"], rows["第一期"]["friend_joins"]) == (2, 1)
    assert rows["第一期"]["k_factor"] == 0.5
    earlier = client.get(f"/api/v1/campaigns/{first}/dashboard", headers=owner).json()
    # The first campaign compares with nothing earlier; its figures match the second's view.
    assert [r["name"] for r in earlier["compare"]] == ["第一期"]
    assert earlier["totals"]["reward_cost"] == rows["第一期"]["reward_cost"]
