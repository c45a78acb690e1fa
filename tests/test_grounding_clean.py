"""Clean drafts that paraphrase their evidence come out clean under an honest checker.

Each case is a real-looking email with the evidence it rests on and the answer an honest
checker would give (written from the checker's prompt: every sentence accounted for, one claim
per fact, a quote that holds the fact's numbers and names). The false-flag rate on this set is
what docs/safety.md reports; it must stay at zero here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.evidence import Evidence
from agents.grounding import verify
from agents.outbound_links import check as check_links
from agents.sentences import sentences_of

NEWS = Evidence(
    "tool:1",
    "https://acme.example/news",
    "URL: https://acme.example/news\nTitle: Acme news\n"
    "Acme raised $45 million in a Series B led by Foo Ventures in September 2025. "
    "Over 90,000 engineers use Acme every week. Customers grew from 410 to 790 this year. "
    "Acme Inc. opened an office in Lisbon, e.g. for its European customers. "
    "Revenue reached $1.19 billion, up 40% on the year.",
    "https://acme.example/news",
)
BLOG = Evidence(
    "tool:2",
    "https://acme.example/blog/launch",
    "URL: https://acme.example/blog/launch\nTitle: Launching Rocketbase\n"
    "Today we launch Rocketbase, our managed database for flight data. "
    "It is in beta with 12 design partners.",
    "https://acme.example/blog/launch",
)
CRM = Evidence(
    "tool:3",
    "tool crm__find_contacts",
    '[{"name": "Grace Hopper", "email": "grace@globex.example", "title": "VP Engineering", '
    '"company": "Globex", "note": "Globex runs 3 data centres in Ohio."}]',
)
ANSWER = Evidence("handoff:h1", "answer of U1", "They moved to Kubernetes in March.")
INPUTS = Evidence(
    "inputs",
    "the playbook's inputs",
    "account: Acme\ncontacts: Ada Lovelace,ada@acme.example,CTO",
)
SENDER = Evidence(
    "sender",
    "the sender's profile and inputs",
    "We build Orbital, a test harness for flight software. We cut test time by 40% at "
    "Initech.\nsender: Maria Chen, Head of Sales, Orbital",
)
EVIDENCE = [
    NEWS,
    BLOG,
    CRM,
    ANSWER,
    Evidence("goal", "the goal", "Outbound to Acme"),
    INPUTS,
    SENDER,
]


@dataclass
class Case:
    body: str
    #: sentence needle → (kind, [(claim, evidence id, quote)])
    honest: dict[str, tuple[str, list[tuple[str, str, str]]]]
    subject: str = ""
    recipient: str = "Ada Lovelace,ada@acme.example,CTO\nAcme"
    extra: list[str] = field(default_factory=list)


CLEAN = {
    "money and month abbreviated": Case(
        "Hi Ada,\nCongrats on the $45M Series B led by Foo Ventures in Sept. Worth a chat?\n"
        "Best,\nMaria Chen",
        {
            "Congrats": (
                "claim",
                [
                    (
                        "Acme raised $45M in a Series B led by Foo Ventures in September",
                        "tool:1",
                        "Acme raised $45 million in a Series B led by Foo Ventures in September 2025",
                    )
                ],
            ),
        },
        subject="Your Series B",
    ),
    "more than for over": Case(
        "Dear Ada, more than 90,000 engineers use Acme every week. Could Orbital help them ship "
        "faster? — Maria",
        {
            "more than": (
                "claim",
                [("Over 90,000 engineers use Acme", "tool:1", "Over 90,000 engineers use Acme")],
            )
        },
    ),
    "nearly doubled": Case(
        "Ada, your customer base nearly doubled this year. That kind of growth strains a test "
        "pipeline. Open to a quick call on Thursday at 3pm?",
        {
            "nearly doubled": (
                "claim",
                [("Customers grew from 410 to 790", "tool:1", "Customers grew from 410 to 790")],
            )
        },
    ),
    "units written out": Case(
        "Hello Ada,\n\nAcme's revenue hit roughly $1.2 billion, up 40 percent. We cut test time by "
        "40% at Initech.\n\nCheers,\nMaria",
        {
            "revenue": (
                "claim",
                [
                    (
                        "Acme's revenue reached $1.2 billion",
                        "tool:1",
                        "Revenue reached $1.19 billion",
                    ),
                    ("revenue was up 40 percent", "tool:1", "up 40% on the year"),
                ],
            ),
            "We cut": (
                "sender",
                [
                    (
                        "We cut test time by 40% at Initech",
                        "sender",
                        "We cut test time by 40% at Initech",
                    )
                ],
            ),
        },
    ),
    "abbreviations and a product": Case(
        "Hi Ada,\nI saw Acme Inc. opened a Lisbon office, e.g. for European customers. I also read "
        "about Rocketbase and its 12 design partners at https://acme.example/blog/launch.\n"
        "Would a 15-minute call next week work?\n— Maria Chen, Orbital",
        {
            "Lisbon": (
                "claim",
                [
                    (
                        "Acme opened an office in Lisbon for European customers",
                        "tool:1",
                        "Acme Inc. opened an office in Lisbon, e.g. for its European customers",
                    )
                ],
            ),
            "Rocketbase": (
                "claim",
                [
                    (
                        "Rocketbase has 12 design partners",
                        "tool:2",
                        "It is in beta with 12 design partners",
                    ),
                    ("Acme launched Rocketbase", "tool:2", "Today we launch Rocketbase"),
                ],
            ),
        },
        subject="Quick Question About Rocketbase",
    ),
    "a CRM record": Case(
        "Hi Grace,\nAs VP Engineering at Globex you run 3 data centres in Ohio. We build Orbital, "
        "a test harness for flight software.\nBest regards,\nMaria Chen\nHead of Sales, Orbital",
        {
            "data centres": (
                "claim",
                [
                    ("Grace is VP Engineering at Globex", "tool:3", '"title": "VP Engineering"'),
                    (
                        "Globex runs 3 data centres in Ohio",
                        "tool:3",
                        "Globex runs 3 data centres in Ohio",
                    ),
                ],
            ),
            "We build": (
                "sender",
                [
                    (
                        "We build Orbital, a test harness",
                        "sender",
                        "We build Orbital, a test harness for flight software",
                    )
                ],
            ),
        },
        recipient="grace@globex.example\nGrace Hopper VP Engineering Globex",
    ),
    "a person's answer": Case(
        "Ada, I hear Acme moved to Kubernetes in March. Orbital runs well there. Happy to show you "
        "how.\n— Maria",
        {
            "Kubernetes": (
                "claim",
                [
                    (
                        "Acme moved to Kubernetes in March",
                        "handoff:h1",
                        "They moved to Kubernetes in March",
                    )
                ],
            ),
            "Orbital runs": ("opinion", []),
        },
    ),
    "inputs only": Case(
        "Dear Ada,\n\nAs CTO of Acme, you may like what Orbital does for flight software. Any "
        "interest?\n\nThanks,\nMaria Chen",
        {
            "As CTO": (
                "claim",
                [("Ada is the CTO of Acme", "inputs", "Ada Lovelace,ada@acme.example,CTO")],
            ),
        },
    ),
    "bullets and a link to the page": Case(
        "Hi Ada,\nThree things stood out on acme.example:\n- the $45M round in September\n"
        "- over 90,000 engineers every week\n- a new office in Lisbon\nWorth comparing notes?\n"
        "Maria",
        {
            "$45M": (
                "claim",
                [
                    (
                        "Acme raised $45M in September",
                        "tool:1",
                        "Acme raised $45 million in a Series B led by Foo Ventures in September 2025",
                    )
                ],
            ),
            "90,000": (
                "claim",
                [
                    (
                        "over 90,000 engineers use Acme every week",
                        "tool:1",
                        "Over 90,000 engineers use Acme every week",
                    )
                ],
            ),
            "Lisbon": (
                "claim",
                [
                    (
                        "Acme opened an office in Lisbon",
                        "tool:1",
                        "Acme Inc. opened an office in Lisbon",
                    )
                ],
            ),
            "Three things": ("opinion", []),
            "Maria": ("signature", []),
        },
    ),
}


def honest_answer(case: Case, sentences: list[Any]) -> dict[str, Any]:
    """What an honest checker answers: the annotated sentences, the rest labelled by form."""
    out = []
    for s in sentences:
        hit = next((v for k, v in case.honest.items() if k in s.text), None)
        if hit is not None:
            kind, claims = hit
            entry: dict[str, Any] = {"id": s.id, "kind": kind}
            if claims:
                entry["claims"] = [{"claim": c, "evidence_id": e, "quote": q} for c, e, q in claims]
        elif s.form:
            entry = {"id": s.id, "kind": s.form}
        elif s.text.endswith("?"):
            entry = {"id": s.id, "kind": "question"}
        elif s.field == "subject":
            entry = {"id": s.id, "kind": "heading"}
        else:
            entry = {"id": s.id, "kind": "call_to_action"}
        out.append(entry)
    return {"sentences": out}


def _run(case: Case) -> Any:
    fields = [("subject", case.subject)] if case.subject else []
    sentences = sentences_of([*fields, ("body", case.body)])
    known = [e.text for e in EVIDENCE] + [e.url for e in EVIDENCE if e.url]
    links = check_links(case.body, known)
    return verify(
        honest_answer(case, sentences), sentences, EVIDENCE, recipient=case.recipient, extra=links
    )


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_a_clean_paraphrasing_draft_comes_out_clean(name: str) -> None:
    report = _run(CLEAN[name])
    assert report.ok, [f.as_dict() for f in report.flags]


def test_the_false_flag_rate_on_the_clean_set_is_zero() -> None:
    flagged = [name for name, case in CLEAN.items() if not _run(case).ok]
    assert len(CLEAN) >= 8
    assert flagged == [], f"false-flag rate {len(flagged)}/{len(CLEAN)}: {flagged}"
