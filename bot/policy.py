"""Answer or escalate: the rules that decide whether the bot may answer, with reason codes.

Pre-checks run on the customer's words before any retrieval (asks for a person, abuse,
strong frustration, two unresolved answers in a row); the retrieval check runs on the best
hit (confidence below the channel's threshold, or an article marked `escalate: always`).
`decide` is the one function both the bot and `supportbot eval` use, so the eval measures
exactly what customers get.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.models import Turn
from bot.retrieval import ArticleHit


class Reason(StrEnum):
    """Reason codes stored on the conversation (`reason`) and shown on agents' ticket cards."""

    ANSWERED = "answered"
    ASKED_FOR_HUMAN = "asked_for_human"
    ABUSE = "abuse"
    FRUSTRATED = "frustrated"
    UNRESOLVED = "unresolved_twice"
    LOW_CONFIDENCE = "low_confidence"
    NO_MATCH = "no_match"
    ARTICLE_ESCALATES = "article_escalates"


# What an agent reads on the ticket card for each reason code.
REASON_TEXT: dict[str, str] = {
    Reason.ANSWERED: "answered from the knowledge base",
    Reason.ASKED_FOR_HUMAN: "customer asked for a person",
    Reason.ABUSE: "abusive language",
    Reason.FRUSTRATED: "customer is strongly frustrated",
    Reason.UNRESOLVED: "two answers in a row did not resolve the question",
    Reason.LOW_CONFIDENCE: "no knowledge-base article was a confident match",
    Reason.NO_MATCH: "the knowledge base has nothing on this",
    Reason.ARTICLE_ESCALATES: "the matching article is marked 'escalate: always'",
}


def describe_reason(code: str) -> str:
    return REASON_TEXT.get(code, code.replace("_", " "))


_PERSON = (r"(?:a |an |some |real |actual |live )*(?:human(?: being)?|person|people|"
           r"agent|rep|representative|operator|somebody|someone|staff(?: member)?|"
           r"support (?:team|staff|person|agent)|customer (?:service|support)|"
           r"team member|member of (?:your |the )?(?:team|staff)|your (?:support |customer )?team)")
_ASK_VERB = (r"(?:talk|speak|chat|connect|transfer|put|escalate|hand|pass|get|give|need|want|"
             r"reach|contact|call|see|forward|route)")
_HUMAN_PATTERNS = [
    # "can I talk to a human", "connect me with an agent", "I need a real person"
    rf"\b{_ASK_VERB}\b(?:\s+\w+){{0,4}}?\s+(?:to|with|me|through|over)?\s*(?:to |with )?"
    rf"{_PERSON}\b",
    rf"\b(?:is there|are there|any)\s+(?:a |an )?{_PERSON}\b",
    r"\bhuman,? please\b|^\s*(?:human|agent|operator|representative|person)\s*[.!?]*\s*$",
    r"\b(?:stop|no more|enough)\b.{0,20}\b(?:bot|robot|machine|ai)\b",
    r"\bnot (?:a |the )?(?:bot|robot|machine)\b",
    r"\b(?:real|actual|live) (?:human|person|people|agent)\b",
    r"\bescalate (?:this|my|it)\b",
    r"\b(?:someone|somebody|anyone) (?:from|at|on|in) (?:your|the) "
    r"(?:team|support|company|staff)\b",
    r"\banyone human\b|\bany humans?\b",
]
# Mentions of people that are not requests to speak to one ("the person who sent me money").
_NOT_A_REQUEST = [
    r"\b(?:add|invite|remove|delete|block|pay|paid|send|sent|transfer(?:red)? money|"
    r"refund)\b.{0,30}\b(?:person|people|agent|team member|someone|somebody)\b",
    r"\b(?:person|someone|somebody|people) (?:who|that) (?!can\b|could\b)|"
    r"\b(?:someone|somebody) else\b",
    r"\bagent (?:api|key|token|app|role|field|name|seat|license|licence)s?\b",
    r"\bcustomer (?:service|support) (?:hours|email|page|number|portal|plan)\b",
    r"\b(?:another|other|a different|the) (?:person|people|team member)'?s?\b"
    r"(?! (?:please|now))",
]
_HUMAN_RE = re.compile("|".join(f"(?:{p})" for p in _HUMAN_PATTERNS), re.IGNORECASE)
_NOT_A_REQUEST_RE = re.compile("|".join(f"(?:{p})" for p in _NOT_A_REQUEST), re.IGNORECASE)

_ABUSE_RE = re.compile(
    r"\b(?:fuck\w*|shit(?:ty)?|bullshit|asshole|bitch|bastard|cunt|dickhead|moron|idiot(?:s|ic)?|"
    r"stupid (?:bot|robot|machine|company|people|app)|retard\w*|scum|go to hell|"
    r"screw (?:you|this)|piece of (?:crap|garbage|junk)|useless (?:bot|piece|garbage|junk)|"
    r"kill you|i will find you)\b", re.IGNORECASE)
_FRUSTRATION_RE = re.compile(
    r"\b(?:this is (?:ridiculous|unacceptable|absurd|a joke|insane|outrageous)|"
    r"i'?m (?:so |really |very |extremely )?(?:furious|livid|fed up|sick of|done with|angry)|"
    r"(?:waste|wasting) (?:of )?my time|worst (?:service|support|company|experience)|"
    r"i want (?:a refund|my money back) now|cancel(?:ling)? (?:my account|everything) "
    r"(?:now|today)|(?:third|fourth|fifth|\d+(?:st|nd|rd|th)) time (?:i'?ve |i have )?"
    r"(?:asked|written|contacted)|nobody (?:is )?help(?:s|ing)|never again|"
    r"(?:lawyer|legal action|sue you|report you))\b", re.IGNORECASE)
_NOT_RESOLVED_RE = re.compile(
    r"\b(?:(?:that|this|it) (?:did ?n[o']?t|does ?n[o']?t|won'?t|is ?n[o']?t) "
    r"(?:help|work|answer|solve|fix|what i)|not what i (?:asked|meant|need)|still (?:not|doesn'?t|"
    r"can'?t|cannot|isn'?t|broken|the same|having)|didn'?t (?:help|work|answer)|"
    r"(?:wrong|irrelevant|useless) answer|you (?:did ?n[o']?t|don'?t) (?:understand|get it)|"
    r"that'?s not (?:it|right|helpful|what))", re.IGNORECASE)
_SHOUTING_MIN_LETTERS = 12


def asks_for_human(text: str) -> bool:
    """True when the customer asks to be handed to a person (not just mentions people)."""
    if not _HUMAN_RE.search(text):
        return False
    # A strong, explicit ask wins even if the sentence also mentions another person.
    explicit = re.search(r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a |an |some )?"
                         r"(?:real |actual |live )?(?:human|person|agent|representative)\b|"
                         r"\b(?:real|actual|live) (?:human|person|agent)\b", text, re.IGNORECASE)
    return bool(explicit) or not _NOT_A_REQUEST_RE.search(text)


def is_abusive(text: str) -> bool:
    return bool(_ABUSE_RE.search(text))


def is_strongly_frustrated(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    shouting = len(letters) >= _SHOUTING_MIN_LETTERS and all(c.isupper() for c in letters)
    exclaiming = text.count("!") >= 3
    return bool(_FRUSTRATION_RE.search(text)) or (shouting and exclaiming)


def says_not_resolved(text: str) -> bool:
    return bool(_NOT_RESOLVED_RE.search(text))


def unresolved_streak(history: Sequence[Turn], text: str) -> int:
    """How many of the bot's latest answers in a row the customer said did not help, counting
    the message being handled now as the reply to the last answer."""
    replies_to: list[str] = []  # customer text following each bot answer, newest first
    following = text
    for turn in reversed(history):
        if turn.role == "customer":
            following = turn.text
        elif turn.role == "bot" and turn.reason == Reason.ANSWERED:
            replies_to.append(following)
            following = ""
        elif turn.role in ("agent", "bot"):
            break  # a handoff or an agent in between starts a fresh count
    streak = 0
    for reply in replies_to:
        if not says_not_resolved(reply):
            break
        streak += 1
    return streak


@dataclass(frozen=True)
class Decision:
    escalate: bool
    reason: str
    hit: ArticleHit | None = None

    @property
    def confidence(self) -> float:
        return self.hit.confidence if self.hit is not None else 0.0


def precheck(text: str, history: Sequence[Turn] = ()) -> Decision | None:
    """Escalations that need no retrieval, in priority order; None: go on and retrieve."""
    if asks_for_human(text):
        return Decision(True, Reason.ASKED_FOR_HUMAN)
    if is_abusive(text):
        return Decision(True, Reason.ABUSE)
    if is_strongly_frustrated(text):
        return Decision(True, Reason.FRUSTRATED)
    if unresolved_streak(history, text) >= 2:
        return Decision(True, Reason.UNRESOLVED)
    return None


def decide(hits: Sequence[ArticleHit], threshold: float) -> Decision:
    """Answer with the best hit when it is confident enough, else escalate."""
    if not hits:
        return Decision(True, Reason.NO_MATCH)
    top = hits[0]
    if top.confidence < threshold:
        return Decision(True, Reason.LOW_CONFIDENCE, top)
    if top.article.escalate == "always":
        return Decision(True, Reason.ARTICLE_ESCALATES, top)
    return Decision(False, Reason.ANSWERED, top)
