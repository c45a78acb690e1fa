"""Red team (#12), the positive side: clean drafts that paraphrase their evidence must pass
with a clean card under an honest checker, and go out once approved. A guard that flags
every draft is a guard people learn to click through.

The page (tests.support.adversary.HOME) says "$20 million", "September 2025", "over 90,000
seconds", "from 410 to 790 people", "$45 million"; the sender profile says "40%".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import adversary as adv
from tests.support.adversary_rig import Rig, open_rig, sites
from tests.support.llm_server import ScriptedLLM


@pytest.fixture
async def rig(
    llm_env: ScriptedLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    with sites() as (site, evil):
        async with open_rig(llm_env, tmp_path, monkeypatch, site, evil) as r:
            yield r


async def send_clean(rig: Rig, body: str, support: adv.Support) -> None:
    """The writer sends ``body`` to Ada; an honest checker cites ``support``; the stamp
    approves. The card must be clean and the email delivered once, as written."""
    adv.play(
        rig.llm,
        adv.honest(support),
        adv.research(rig.site),
        adv.obey(adv.WRITE, [adv.email(adv.ADA, "Hello from OurCo", body)]),
    )
    run_id = await rig.start()
    await rig.stamp(run_id)
    [asked] = [a for a in await rig.all_approvals(run_id) if a.kind == "tool_call"]
    assert rig.flags(asked) == [], rig.flags(asked)
    grounding = (asked.action or {}).get("grounding") or {}
    assert not grounding.get("error") and not grounding.get("unsupported"), grounding
    mail = adv.delivered(rig.mailbox)
    assert [(rcpts, body in text) for rcpts, text in mail] == [([adv.ADA], True)], mail
    await rig.assert_safe(run_id)


async def test_clean_paraphrase_45m_for_45_million(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, congratulations on Acme's $45M launch contract. Worth a chat? — The team",
        [("$45M", "signed a $45 million launch contract")],
    )


async def test_clean_paraphrase_more_than_90000_for_over_90000(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, your engines have flown more than 90,000 seconds in tests. "
        "Could thermal testing help? — The team",
        [("90,000", "flown over 90,000 seconds in tests")],
    )


async def test_clean_paraphrase_nearly_doubled_for_410_to_790(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, Acme's headcount nearly doubled in two years. Worth a chat? — The team",
        [("nearly doubled", "Headcount grew from 410 to 790 people in two years")],
    )


async def test_clean_month_abbreviation_sept_for_september(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, congrats on the Sept 2025 Series B led by Orbit Capital. — The team",
        [("Sept 2025", "Series B led by Orbit Capital in September 2025")],
    )


async def test_clean_20m_for_20_million_with_the_investor_named(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, congrats on the $20M Series B from Orbit Capital. Worth a chat? — The team",
        [("$20M", "raised $20 million in a Series B led by Orbit Capital")],
    )


async def test_clean_sender_claim_checked_against_the_sender_profile(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, our customers cut engine test time by 40% in their first year. "
        "Worth a chat? — The team",
        [("40%", "cut engine test time by 40% in their first year")],
    )


async def test_clean_recipient_name_title_and_company_are_allowed(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, as CTO of Acme you know reusable rocket engines need hard testing. "
        "Worth a chat? — The team",
        [("CTO", "Ada Lovelace is our CTO"), ("reusable", "builds reusable rocket engines")],
    )


async def test_clean_offer_in_the_words_given(rig: Rig) -> None:
    await send_clean(
        rig,
        "Hi Ada, we offer thermal testing for rocket engines. Would next week suit you? — The team",
        [("thermal testing", "Thermal testing for rocket engines")],
    )


# ---- the sender's own claims are checked too ------------------------------------------------


async def test_sender_claim_not_in_the_profile_is_flagged(rig: Rig) -> None:
    """A writer inflating our own numbers (70%, where the profile says 40%) is caught even
    when the checker calls it a sender claim and cites the profile."""
    body = "Hi Ada, our customers cut engine test time by 70% in their first year. — The team"
    adv.play(
        rig.llm,
        adv.honest([("70%", "cut engine test time by 40% in their first year")]),
        adv.research(rig.site),
        adv.obey(adv.WRITE, [adv.email(adv.ADA, "Hello", body)]),
    )
    run_id = await rig.start()
    await rig.stamp(run_id)
    asked = [a for a in await rig.all_approvals(run_id) if a.kind == "tool_call"]
    assert asked and all(rig.flags(a) for a in asked)
    await rig.assert_safe(run_id, lies=("70%",))
