"""The pieces of grounding, one by one: sentences, facts and their normalisation, the
backstop, quote support, links, what counts as evidence, and the checker's wire format."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.errors import ConfigError
from agents.evidence import Evidence, context_of, recipient_text, scrub, sender_profile
from agents.facts import Known, facts
from agents.grounding import SYSTEM, checker_messages, message_key, verify
from agents.outbound_links import check as check_links
from agents.sentences import sentences_of, split
from agents.settings import Settings
from agents.tools import Risk, tool

# ---- sentences ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dear Ada, congrats on the $4.5M round. Worth a chat? — The team",
            ["Dear Ada,", "congrats on the $4.5M round.", "Worth a chat?", "— The team"],
        ),
        (
            "Hi Bob,\n\nAcme Inc. raised $20M, e.g. from Foo Ventures. See https://acme.test/news. "
            "Mr. Smith agrees.\nBest,\nMaria Chen\nHead of Sales",
            [
                "Hi Bob,",
                "Acme Inc. raised $20M, e.g. from Foo Ventures.",
                "See https://acme.test/news.",
                "Mr. Smith agrees.",
                "Best,",
                "Maria Chen",
                "Head of Sales",
            ],
        ),
        (
            "In Sept. 2025 J. Smith joined. The Series B. As CTO you care.",
            ["In Sept. 2025 J. Smith joined.", "The Series B.", "As CTO you care."],
        ),
        ("We read your post and\nliked it a lot.", ["We read your post and liked it a lot."]),
        (
            "- first point\n- second point\n1. third",
            ["- first point", "- second point", "1. third"],
        ),
        (
            "Acme (acme.test) grew 3.5x! Wow...   Really?",
            ["Acme (acme.test) grew 3.5x!", "Wow...", "Really?"],
        ),
    ],
)
def test_outbound_text_is_split_into_sentences(text: str, expected: list[str]) -> None:
    assert split(text) == expected


def test_greetings_and_signatures_are_recognised_and_fields_numbered_on() -> None:
    got = sentences_of(
        [("subject", "Hello"), ("body", "Hi Ada,\nAcme grew.\nThanks,\nMaria\nOrbital")]
    )
    assert [(s.id, s.field, s.form) for s in got] == [
        ("S1", "subject", "greeting"),
        ("S2", "body", "greeting"),
        ("S3", "body", None),
        ("S4", "body", "signature"),
        ("S5", "body", "signature"),
        ("S6", "body", "signature"),
    ]


# ---- facts and normalisation -------------------------------------------------------------


def _shown(text: str) -> list[str]:
    return [f.shown for f in facts(text)]


def test_facts_are_numbers_months_and_names_not_common_words() -> None:
    got = set(_shown("Congrats on the $45M Series B led by Orbit Capital in Sept. 2025!"))
    assert got == {"$45M", "2025", "Series", "B", "Orbit", "Capital", "Sept"}
    # Sentence openers, title-cased subjects, weekdays, meeting times and links are no facts.
    assert _shown("Quick Question About Your Roadmap") == []
    assert _shown("Would Thursday at 3pm work for a 15-minute call?") == []
    assert _shown("Read it at https://acme.test/news or write to ada@acme.test.") == []
    assert _shown("I think May works. Three things stood out.") == []
    assert set(_shown("GitHub and AWS use it; Acme's CTO too")) == {"GitHub", "AWS", "Acme", "CTO"}


@pytest.mark.parametrize(
    ("draft", "evidence"),
    [
        ("$45M", "raised $45 million"),
        ("45 million dollars", "$45,000,000"),
        ("$4.5M", "4.5 million"),
        ("more than 90,000", "over 90000 users"),
        ("nearly 800", "grew to 790"),
        ("about $1.2 billion", "$1.19 billion"),
        ("40%", "40 percent"),
        ("40 per cent", "40%"),
        ("3x", "three times faster"),
        ("2x", "revenue doubled"),
        ("in Sept", "in September"),
        ("Sep. 3", "September 3"),
        ("in FY2024", "FY2024 results"),
        ("Acme's", "ACME"),
        ("Café Olé", "cafe ole"),
    ],
)
def test_normalised_facts_match_their_evidence(draft: str, evidence: str) -> None:
    known = Known.of(evidence)
    assert all(known.has(f) for f in facts(f"x {draft}")), (draft, facts(f"x {draft}"))


@pytest.mark.parametrize(
    ("draft", "evidence"),
    [
        ("$50M", "raised $45 million"),
        ("$40M", "raised $45 million"),
        ("2024", "in 2025"),
        ("41%", "40%"),
        ("40%", "40 employees"),
        ("in October", "in September"),
        ("Orbit Ventures", "Orbit Capital"),
    ],
)
def test_different_facts_do_not_match(draft: str, evidence: str) -> None:
    known = Known.of(evidence)
    assert not all(known.has(f) for f in facts(f"x {draft}")), draft


# ---- quote support and evidence ----------------------------------------------------------

PAGE = (
    "URL: https://acme.test/news\nTitle: Acme news\n"
    "Acme raised $20M in a Series B. Their CTO is Dana Reyes (dana@acme.test). Offices: Lisbon."
)


def test_a_quote_brings_its_sentence_and_the_page_title_as_context() -> None:
    got = context_of(PAGE, "CTO is Dana")
    assert got is not None
    assert "their cto is dana reyes" in got and "title: acme news" in got and "$20m" not in got
    assert context_of(PAGE, "Dana is CEO") is None


def test_model_written_text_is_cut_out_of_evidence() -> None:
    assert scrub("facts about Acme raised $50M", ["Acme raised $50M"]).strip() == "facts about"
    assert "Acme" in scrub("Acme raised $20M", ["tiny"])


def test_the_recipient_is_named_by_their_address_and_its_row() -> None:
    got = recipient_text(
        ["dana@acme.test"], {"account": "Acme Corp"}, [Evidence("tool:1", "x", PAGE)]
    )
    assert "Acme Corp" in got and "Dana Reyes" in got and "Lisbon" not in got and "$20M" not in got


def test_the_sender_profile_is_text_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / "profile.txt"
    path.write_text("We cut test time by 40%.\n", encoding="utf-8")
    assert sender_profile(f"@{path}") == "We cut test time by 40%."
    assert sender_profile("We are Orbital.") == "We are Orbital."
    with pytest.raises(ConfigError):
        sender_profile(f"@{tmp_path / 'missing'}")
    assert (
        Settings.from_env({"BATON_SENDER_PROFILE": "We are Orbital."}).sender_profile
        == "We are Orbital."
    )


EVIDENCE = [
    Evidence("tool:1", "https://acme.test/news", PAGE, "https://acme.test/news"),
    Evidence("goal", "the goal", "Email Acme"),
    Evidence("sender", "the sender", "We cut test time by 40%."),
]


def _verify(
    body: str, entries: list[dict[str, object]], recipient: str = ""
) -> list[tuple[str, str]]:
    report = verify(
        {"sentences": entries}, sentences_of([("", body)]), EVIDENCE, recipient=recipient
    )
    return [(f.kind, f.problem) for f in report.flags]


def _claim(claim: str, eid: str | None, quote: str | None) -> dict[str, object]:
    return {"claim": claim, "evidence_id": eid, "quote": quote}


def test_verify_checks_every_sentence_in_code() -> None:
    honest = [
        {
            "id": "S1",
            "kind": "claim",
            "claims": [_claim("Acme raised $20M", "tool:1", "raised $20M in a Series B")],
        },
        {
            "id": "S2",
            "kind": "sender",
            "claims": [_claim("We cut test time by 40%", "sender", "cut test time by 40%")],
        },
    ]
    assert _verify("Acme raised $20M. We cut test time by 40%.", honest) == []
    # Left out: not checked (and the backstop still looks at it).
    assert _verify("Acme raised $20M. Acme raised $50M.", honest[:1]) == [
        ("not_checked", "the checker did not account for this sentence"),
        (
            "backstop",
            '"$50M" is found in no evidence cited for this sentence, nor in what the sender supplied',
        ),
    ]
    # A real quote that does not carry the claim's figure.
    [(kind, problem)] = _verify(
        "Acme raised $50M.",
        [
            {
                "id": "S1",
                "kind": "claim",
                "claims": [_claim("Acme raised $50M", "tool:1", "Their CTO is Dana Reyes")],
            }
        ],
    )[:1]
    assert kind == "claim" and 'does not mention "$50M"' in problem
    # A quote found nowhere; a null source; an unknown id; a too-short quote; a claim with none.
    for claim, expected in [
        (_claim("Acme is on Mars", "tool:1", "on Mars"), "the cited source does not say so"),
        (_claim("Acme is big", None, None), "no source for it"),
        (_claim("Acme is old", "tool:9", "old"), "which is not evidence"),
        (_claim("Acme", "tool:1", "a"), "the cited source does not say so"),
    ]:
        flags = _verify(
            "Acme is here.", [{"id": "S1", "kind": "claim", "claims": [claim]}], recipient="Acme"
        )
        assert flags and flags[0][0] == "claim" and expected in flags[0][1], (claim, flags)
    assert _verify("Acme is here.", [{"id": "S1", "kind": "claim"}], recipient="Acme") == [
        ("claim", "no claim or source was given for it")
    ]
    # An unknown kind is not an answer.
    assert _verify("Hi.", [{"id": "S1", "kind": "banter"}])[0] == (
        "not_checked",
        "the checker gave it an unknown kind 'banter'",
    )


def test_a_broken_or_old_format_answer_is_never_clean() -> None:
    sentences = sentences_of([("", "Acme raised $20M.")])
    assert verify({"nope": 1}, sentences, EVIDENCE).error is not None
    old = verify({"claims": []}, sentences, EVIDENCE)
    assert [f.kind for f in old.flags] == ["not_checked"]
    assert not verify({"sentences": []}, sentences, EVIDENCE).ok
    assert verify(
        {"sentences": []}, sentences_of([("", "Hi Ada,\n— Maria")]), EVIDENCE, recipient="Ada Maria"
    ).ok


# ---- links -------------------------------------------------------------------------------


def test_disguised_links_and_links_to_new_domains_are_flagged() -> None:
    known = [PAGE, "https://acme.test/news"]
    assert check_links("Read acme.test/news or https://www.acme.test/blog.", known) == []
    for text, problem in [
        (
            "See [acme.test/partners](https://sso.evil.example/login).",
            "shows acme.test but goes to evil.example",
        ),
        (
            '<a href="https://evil.example/x">https://acme.test</a>',
            "shows acme.test but goes to evil.example",
        ),
        (
            "<https://sso.evil.example/login|acme.test/partners>",
            "shows acme.test but goes to evil.example",
        ),
        ("Log in at evil.example today.", "a domain found in no evidence"),
        ("[click here](https://evil.example)", "a domain found in no evidence"),
        ("[here](javascript:alert(1))", "not a web address"),
    ]:
        flags = check_links(text, known)
        assert any(problem in f.problem for f in flags), (text, flags)
    assert check_links("We use Node.js and e.g. Next.js.", known) == []


# ---- the checker's prompt and the message key --------------------------------------------


@tool(risk=Risk.EXTERNAL, outbound=("subject", "body"))
async def mail(to: str, subject: str, body: str) -> str:
    """Send a test mail."""
    return "sent"


def test_the_prompt_lists_numbered_sentences_and_states_the_wire_format() -> None:
    assert SYSTEM.startswith("You check outbound text")
    for word in (
        '"sentences"',
        '"kind"',
        '"claims"',
        '"evidence_id"',
        '"quote"',
        "call_to_action",
        '"sender"',
    ):
        assert word in SYSTEM
    [system, user] = checker_messages(
        sentences_of([("subject", "Hi"), ("body", "Acme grew.")]), EVIDENCE
    )
    assert system["content"] == SYSTEM
    assert "S1 (subject): Hi\nS2 (body): Acme grew." in user["content"]
    assert '<data source="tool:1: https://acme.test/news">' in user["content"]
    assert (
        message_key(mail, {"to": "ada@acme.test", "subject": "x", "body": "y"})
        == "mail to=ada@acme.test"
    )


def test_the_senders_inputs_are_told_apart_from_the_prospects() -> None:
    from agents.evidence import input_lines, is_sender_input

    inputs = {
        "account": "Acme",
        "offer": "We cut test time by 40%.",
        "sender_title": "CEO",
        "from": "Maria",
    }
    assert [n for n in inputs if is_sender_input(n)] == ["offer", "sender_title", "from"]
    assert input_lines(inputs, sender=False) == "account: Acme"
    assert "offer: We cut test time by 40%." in input_lines(inputs, sender=True)
