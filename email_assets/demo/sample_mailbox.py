"""A generated mailbox that looks like a real one: threads, replies, HTML newsletters,
attachments, signatures, forwarded mail and a few legacy charsets, over recent days.

Deterministic for a given seed, so the demo, tests and benchmarks can say exactly what
they expect to find.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

PEOPLE = [
    ("Ana Souza", "ana@example.org"),
    ("Bruno Keller", "bruno@example.net"),
    ("Chloé Martin", "chloe@example.fr"),
    ("Dmitri Ivanov", "dmitri@example.com"),
    ("Eva Fernández", "eva@example.es"),
    ("Farid Haddad", "farid@example.org"),
]
OWNER = ("Demo User", "demo@example.test")

TOPICS = [
    (
        "Quarterly budget review",
        "the quarterly budget review: travel spend is 12% over plan and the "
        "hardware line is under. Can we move the laptop refresh into Q3 and freeze travel until then?",
    ),
    (
        "Database outage postmortem",
        "the postmortem for Tuesday's database outage. The primary ran out of "
        "disk during the vacuum, replication lag hit 40 minutes, and failover did not trigger because the "
        "health check only looked at the port.",
    ),
    (
        "Database outage postmortem",
        "the action items from Tuesday's outage: alert on disk usage at 80%, run the "
        "vacuum on the replica first, and rehearse a manual failover every month.",
    ),
    (
        "Database outage postmortem",
        "the customer timeline of Tuesday's outage: the API returned errors for 52 minutes, "
        "the status page was updated after 15 minutes, and two enterprise customers asked for credits.",
    ),
    (
        "Team offsite in Lisbon",
        "the team offsite in Lisbon. Hotel is booked near Alfama for the 14th to "
        "the 16th; please send dietary requirements and flight times so we can arrange transfers.",
    ),
    (
        "Kubernetes upgrade plan",
        "the Kubernetes upgrade to 1.31. We drain one node pool at a time on "
        "Saturday morning; the ingress controller must be upgraded first because of the API removal.",
    ),
    (
        "Invoice for consulting services",
        "the invoice for the consulting services in October: 32 hours at "
        "the agreed rate, payment due within 30 days to the account on file.",
    ),
    (
        "Hiring: senior data engineer",
        "the senior data engineer opening. We shortlisted four candidates; "
        "the take-home exercise is the Dagster pipeline over a public dataset.",
    ),
    (
        "Garden club newsletter",
        "the garden club: tomato seedlings swap on Sunday, and a talk about composting with worms in small apartments.",
    ),
    (
        "Security incident: phishing attempt",
        "a phishing attempt that imitated our payroll provider; do not "
        "click the link in the message about updating bank details, and report similar mail.",
    ),
]

SIGNATURES = [
    "-- \n{name}\nSent with care from the {dept} team",
    "Sent from my iPhone",
    "Best regards,\n{name}",
    "-- \n{name} | {dept}\n+1 555 0100",
]
REPLY_HEADERS = [
    "On {date}, {name} <{addr}> wrote:",
    "Le {date}, {name} <{addr}> a écrit :",
    "Am {date} schrieb {name} <{addr}>:",
]


@dataclass(frozen=True)
class SampleMessage:
    raw: bytes
    internaldate: dt.datetime
    topic: str
    folder: str


def _base(rng: random.Random, sender: tuple[str, str], subject: str, when: dt.datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"{sender[0]} <{sender[1]}>"
    message["To"] = f"{OWNER[0]} <{OWNER[1]}>"
    if rng.random() < 0.3:
        other = rng.choice(PEOPLE)
        message["Cc"] = f"{other[0]} <{other[1]}>"
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = make_msgid(idstring=f"{rng.getrandbits(48):x}", domain=sender[1].split("@")[1])
    return message


FOLLOW_UPS = [
    "{person} will own the follow-up and report back on {day}.",
    "{person} asked whether this changes the plan for {day}.",
    "We agreed to revisit this with {person} on {day}.",
    "{person} has the details if anything is unclear before {day}.",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _follow_up(rng: random.Random) -> str:
    return rng.choice(FOLLOW_UPS).format(person=rng.choice(PEOPLE)[0].split()[0], day=rng.choice(WEEKDAYS))


def _body(rng: random.Random, sender: tuple[str, str], topic_text: str) -> str:
    greeting = rng.choice(["Hi,", "Hello team,", "Hi all,", "Bonjour,", "Hallo,"])
    detail = rng.choice(
        [
            "Let me know what you think before Friday.",
            "Numbers are in the attached sheet.",
            "I will share an update after the call tomorrow.",
            "Questions welcome, as always.",
        ]
    )
    signature = rng.choice(SIGNATURES).format(name=sender[0], dept=rng.choice(["platform", "finance", "people"]))
    return f"{greeting}\n\nA note about {topic_text}\n\n{_follow_up(rng)} {detail}\n\n{signature}\n"


def generate_mailbox(
    days: int = 14, per_day: int = 25, seed: int = 7, today: dt.date | None = None
) -> list[SampleMessage]:
    """`days * per_day` messages ending today (UTC), one topic each, in INBOX and Sent."""
    rng = random.Random(seed)
    today = today or dt.datetime.now(dt.UTC).date()
    messages: list[SampleMessage] = []
    for day_index in range(days):
        day = today - dt.timedelta(days=days - 1 - day_index)
        for _ in range(per_day):
            when = dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60), rng.randrange(60)), dt.UTC)
            subject, topic_text = rng.choice(TOPICS)
            sender = rng.choice(PEOPLE)
            kind = rng.random()
            folder = "INBOX"
            if kind < 0.35:
                message = _base(rng, sender, subject, when)
                message.set_content(_body(rng, sender, topic_text))
            elif kind < 0.55:
                message = _base(rng, sender, f"Re: {subject}", when)
                quoted = "\n".join("> " + line for line in _body(rng, OWNER, topic_text).splitlines())
                header = rng.choice(REPLY_HEADERS).format(
                    date=format_datetime(when - dt.timedelta(hours=3)), name=OWNER[0], addr=OWNER[1]
                )
                reply = rng.choice(["Agreed, thanks.", "Sounds good to me.", "I have one concern, see below."])
                message["In-Reply-To"] = make_msgid(domain="example.test")
                message["References"] = message["In-Reply-To"]
                message.set_content(f"{reply} About {topic_text} {_follow_up(rng)}\n\n{header}\n{quoted}\n")
            elif kind < 0.72:
                message = _base(rng, sender, subject, when)
                text = _body(rng, sender, topic_text)
                html = (
                    "<html><head><style>p{color:#333}</style></head><body>"
                    + "".join(f"<p>{line}</p>" for line in text.split("\n") if line)
                    + '<img src="https://tracker.example/p.gif" width="1" height="1"></body></html>'
                )
                message.set_content(text)
                message.add_alternative(html, subtype="html")
            elif kind < 0.82:
                message = _base(rng, sender, subject, when)
                message.set_content(_body(rng, sender, topic_text))
                message.add_attachment(
                    rng.randbytes(rng.randrange(2_000, 40_000)),
                    maintype="application",
                    subtype="pdf",
                    filename=rng.choice(["report.pdf", "Rechnung März.pdf", "slides.pdf"]),
                )
            elif kind < 0.9:
                message = _base(rng, sender, f"Fwd: {subject}", when)
                message.set_content(
                    f"FYI, see below.\n\n---------- Forwarded message ---------\nFrom: {sender[0]} <{sender[1]}>\n"
                    f"Subject: {subject}\n\nA note about {topic_text}\n"
                )
            elif kind < 0.95:
                message = _base(rng, sender, subject, when)
                message.set_content(_body(rng, sender, topic_text), charset="iso-8859-1", cte="quoted-printable")
            else:
                message = _base(rng, OWNER, subject, when)
                del message["To"]
                message["To"] = f"{sender[0]} <{sender[1]}>"
                message.set_content(_body(rng, OWNER, topic_text))
                folder = "Sent"
            messages.append(
                SampleMessage(message.as_bytes(policy=message.policy.clone(linesep="\r\n")), when, subject, folder)
            )
    return messages
