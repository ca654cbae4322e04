"""Policy: who gets handed to a person, and why (reason codes)."""

from __future__ import annotations

import pytest

from bot.knowledge import Article
from bot.models import Turn
from bot.policy import (
    Reason,
    asks_for_human,
    decide,
    describe_reason,
    is_abusive,
    is_strongly_frustrated,
    precheck,
    unresolved_streak,
)
from bot.retrieval import ArticleHit

MUST_ESCALATE = [
    "Can I talk to a human?",
    "I want to speak to a real person",
    "connect me with an agent please",
    "agent",
    "Human please",
    "is there a person I can chat with?",
    "Please transfer me to a representative",
    "I need to talk to someone from support",
    "put me through to customer service",
    "let me speak with a live agent",
    "get me a human",
    "I'd like to speak to an operator",
    "stop, I don't want a bot",
    "are you a bot? I want a real human",
    "can someone from your team contact me",
    "escalate this please",
    "I want a person, not a machine",
    "Could you connect me to a support agent?",
    "talk to human",
    "Representative!",
    "I need a real person to look at this",
    "can I chat with a staff member",
    "hand me over to a human agent",
    "pass me to someone who can help",
    "I'd rather speak with a person",
    "enough with the bot, give me a human",
    "is there anyone human there?",
    "please get a support person to call me",
    "let me talk to your team",
    "need to reach a customer support agent",
    "I want to speak to somebody",
    "can you escalate my issue to a person",
]

MUST_NOT_ESCALATE = [
    "How do I add a person to my team?",
    "invite someone to my workspace",
    "how do I remove a team member",
    "I sent money to the wrong person",
    "can I pay another person with my card",
    "what are your customer service hours",
    "how do I create an agent API key",
    "the person who sent me money says it arrived",
    "someone else used my card",
    "How do I reset my password?",
    "can I transfer money to someone abroad",
    "how many people can use one account",
    "where do I find the customer support email",
    "my colleague is a team member, how do I change her role",
    "do you support multiple agents in the helpdesk integration",
    "I want to talk about my invoice",
    "Can I speak French in the app?",
    "how do I share an invoice with a client",
    "Is there a limit on people per plan?",
    "refund someone who paid twice",
    "add people to a recurring invoice",
    "block a person from my account",
    "how can I contact my bank",
    "transfer money to my friend",
    "can my accountant see my invoices",
    "I need to change my email",
    "get the invoice for last month",
    "who is the owner of the workspace",
    "can I delete another person's payment",
    "how do people pay me by card",
    "what does the agent field on the ticket mean",
    "give me a summary of my plan",
]


@pytest.mark.parametrize("text", MUST_ESCALATE)
def test_asks_for_a_person_escalates(text: str) -> None:
    assert asks_for_human(text), text
    decision = precheck(text)
    assert decision is not None and decision.reason == Reason.ASKED_FOR_HUMAN


@pytest.mark.parametrize("text", MUST_NOT_ESCALATE)
def test_near_misses_do_not_escalate(text: str) -> None:
    assert not asks_for_human(text), text
    assert precheck(text) is None


def test_lists_are_big_enough() -> None:
    assert len(set(MUST_ESCALATE)) >= 30 and len(set(MUST_NOT_ESCALATE)) >= 30


@pytest.mark.parametrize("text", ["you useless bot, fuck this", "what a piece of crap app",
                                  "you are an idiot"])
def test_abuse_escalates(text: str) -> None:
    assert is_abusive(text)
    decision = precheck(text)
    assert decision is not None and decision.reason == Reason.ABUSE


@pytest.mark.parametrize("text", ["This is ridiculous, I've been waiting for a week",
                                  "I'M SO DONE WITH THIS APP!!!",
                                  "this is the third time I've asked about my refund",
                                  "you're wasting my time"])
def test_strong_frustration_escalates(text: str) -> None:
    assert is_strongly_frustrated(text)
    decision = precheck(text)
    assert decision is not None and decision.reason == Reason.FRUSTRATED


@pytest.mark.parametrize("text", ["my card is stuck!", "How do I export data?", "IBAN",
                                  "ok thanks, that worked"])
def test_calm_messages_pass(text: str) -> None:
    assert not is_abusive(text) and not is_strongly_frustrated(text)
    assert precheck(text) is None


def _answered(text: str) -> Turn:
    return Turn("bot", text, 1.0, article_id="a", reason=Reason.ANSWERED)


def test_two_unresolved_answers_in_a_row_escalate() -> None:
    history = [Turn("customer", "how do I export?", 1.0), _answered("Go to settings."),
               Turn("customer", "that didn't help", 2.0), _answered("Try the export page.")]
    assert unresolved_streak(history, "still not working") == 2
    decision = precheck("still not working", history)
    assert decision is not None and decision.reason == Reason.UNRESOLVED
    # Only one unresolved answer so far: keep answering.
    assert unresolved_streak(history[:2], "that didn't help") == 1
    assert precheck("that didn't help", history[:2]) is None
    # A satisfied reply in between breaks the streak.
    resolved = [*history[:2], Turn("customer", "thanks, new question", 2.0),
                _answered("Here you go.")]
    assert unresolved_streak(resolved, "that didn't help") == 1


def _hit(confidence: float, escalate: str = "never") -> ArticleHit:
    article = Article(id="a", title="A", body="Body.", escalate=escalate)
    return ArticleHit(article, confidence, best=0.9, votes=1.0, lexical=0.5)


def test_decide_thresholds_and_article_escalation() -> None:
    assert decide([], 0.5).reason == Reason.NO_MATCH
    low = decide([_hit(0.49)], 0.5)
    assert low.escalate and low.reason == Reason.LOW_CONFIDENCE and low.confidence == 0.49
    ok = decide([_hit(0.5)], 0.5)
    assert not ok.escalate and ok.reason == Reason.ANSWERED
    always = decide([_hit(0.99, escalate="always")], 0.5)
    assert always.escalate and always.reason == Reason.ARTICLE_ESCALATES


def test_every_reason_has_agent_text() -> None:
    for reason in Reason:
        assert describe_reason(reason) != reason.value.replace("_", " ") or reason == "answered"
    assert describe_reason("something_new") == "something new"
