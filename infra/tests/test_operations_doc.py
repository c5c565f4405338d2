"""docs/operations.md stays on the log line contract: its Logs Insights queries use only the
fields the function logs, its tables list exactly the log fields and EMF metrics, and the
anchors the alarms and deploy.sh point at exist.

Run: python -m unittest discover -s infra/tests   (infra/test.sh does)

Queries are the ```logs-insights blocks (and the `q='…'` of the shell example). Each is split
into commands at the pipes outside strings and regular expressions; every command must be one
of Logs Insights'; every name that is not a keyword, a function, an alias made earlier with
`as`, or a field Logs Insights discovers itself (@…) must be a field of LOG_FIELDS. A value
compared with `outcome` or `message` must be one the function writes.
"""

import re
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "operations.md"
sys.path.insert(0, str(ROOT / "infra" / "policy"))
import check_template as ct  # noqa: E402  (the EMF contract and the edge Regions live there)

# The per-request JSON log line (DESIGN.md §11, issue 16). edge/src must emit exactly these
# fields, one line per request: `edge serve` on stderr, the Lambda on stdout/stderr, which
# CloudWatch Logs receives in the Region of each edge.
LOG_FIELDS = [
    "level", "message", "request_id", "key", "query", "outcome", "status", "bytes_in", "bytes_out",
    "total_ms", "fetch_ms", "decode_ms", "resize_ms", "encode_ms", "store_ms", "store_round_trips",
]
# `message` of the per-request line, and the values of `outcome`.
REQUEST_MESSAGE = "request"
OUTCOMES = {"reused", "built", "master"} | ct.EMF_DIMENSIONS["ErrorCode"]

# Fields Logs Insights discovers itself: every log event's, and Lambda's REPORT line's.
SYSTEM_FIELDS = {
    "@timestamp", "@message", "@logStream", "@log", "@ingestionTime", "@requestId", "@type",
    "@duration", "@billedDuration", "@memorySize", "@maxMemoryUsed", "@initDuration",
}
COMMANDS = {"fields", "filter", "stats", "sort", "limit", "display", "parse", "dedup"}
KEYWORDS = {"and", "or", "not", "like", "in", "as", "by", "asc", "desc"}
FUNCTIONS = {
    "count", "count_distinct", "sum", "avg", "min", "max", "pct", "stddev", "earliest", "latest",
    "bin", "datefloor", "dateceil", "strcontains", "ispresent", "isempty", "isblank", "coalesce",
    "concat", "tolower", "toupper", "strlen", "substr", "replace", "trim", "ltrim", "rtrim",
    "abs", "ceil", "floor", "greatest", "least", "log", "sqrt",
}

TOKEN = re.compile(
    r"""\s+|(?P<string>"[^"]*"|'[^']*')|(?P<regex>/(?:\\.|[^/\\])+/)|(?P<name>`[^`]+`|@?[A-Za-z_][\w.]*)"""
    r"""|(?P<number>\d+(?:\.\d+)?[a-z]*)|(?P<pipe>\|)|(?P<op>[=!<>]=?|=~|[-+*/%^(),\[\]])"""
)


def tokens(query: str) -> list:
    """(kind, text) of each token; a / starts a regular expression only after like or =~."""
    out, i = [], 0
    while i < len(query):
        m = TOKEN.match(query, i)
        if not m:
            raise ValueError(f"cannot read {query[i:i + 20]!r}")
        i = m.end()
        kind = m.lastgroup
        if kind is None:
            continue
        if kind == "regex" and not (out and out[-1][1] in ("like", "=~")):
            # Division, not a regex: read just the slash.
            out.append(("op", "/"))
            i = m.start() + 1
            continue
        out.append((kind, m.group(kind)))
    return out


def problems(query: str) -> list:
    """What in one query is not Logs Insights, or not the log line contract."""
    out, aliases = [], set()
    toks = tokens(re.sub(r"(?m)^\s*#.*$", "", query))
    commands = [[]]
    for t in toks:
        if t[0] == "pipe":
            commands.append([])
        else:
            commands[-1].append(t)
    for command in commands:
        if not command or command[0] != ("name", command[0][1]) or command[0][1] not in COMMANDS:
            out.append(f"not a Logs Insights command: {' '.join(t[1] for t in command[:3])}")
            continue
        for i, (kind, text) in enumerate(command[1:], start=1):
            if kind != "name":
                continue
            before = command[i - 1][1]
            after = command[i + 1][1] if i + 1 < len(command) else None
            name = text.strip("`")
            if before == "as":
                if name in LOG_FIELDS:
                    out.append(f"alias {name} hides the log field of the same name")
                aliases.add(name)
            elif name in KEYWORDS:
                continue
            elif after == "(":
                if name not in FUNCTIONS:
                    out.append(f"not a Logs Insights function: {name}")
            elif name.startswith("@"):
                if name not in SYSTEM_FIELDS:
                    out.append(f"not a field Logs Insights discovers: {name}")
            elif name not in LOG_FIELDS and name not in aliases:
                out.append(f"not a field of the log line: {name}")
        # Values the function writes: outcome = "built", strcontains(outcome, "built"), message = "request".
        for i, (kind, text) in enumerate(command):
            if kind != "string" or i < 2 or command[i - 1][1] not in ("=", "!=", ","):
                continue
            field, value = command[i - 2][1], text[1:-1]
            if field == "outcome" and value not in OUTCOMES:
                out.append(f"outcome {value!r} is not one the function writes")
            if field == "message" and value != REQUEST_MESSAGE:
                out.append(f"message {value!r}: the per-request line's is {REQUEST_MESSAGE!r}")
    return out


def doc_queries(text: str) -> list:
    blocks = re.findall(r"```logs-insights\n(.*?)```", text, flags=re.S)
    shell = re.findall(r"^q='(.*)'$", text, flags=re.M)
    return blocks + shell


def table_first_column(text: str, header: str) -> list:
    """The backticked names in the first column of the table whose header row is header."""
    rows = re.search(re.escape(header) + r"\n\|[-| ]+\|\n((?:\|[^\n]*\n)+)", text).group(1)
    return [n for row in rows.splitlines() for n in re.findall(r"`([^`]+)`", row.split("|")[1])]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


class OperationsDoc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = DOC.read_text(encoding="utf-8")
        cls.queries = doc_queries(cls.text)

    def test_every_query_uses_only_the_log_contract(self):
        self.assertGreaterEqual(len(self.queries), 10)
        for q in self.queries:
            with self.subTest(q.splitlines()[0]):
                self.assertEqual(problems(q), [])

    def test_each_common_question_has_a_query(self):
        questions = {
            "slowest renders": r'outcome = "built"[\s\S]*sort total_ms desc',
            "error counts by code": r"status >= 400[\s\S]*by outcome",
            "built vs reused ratio": r'strcontains\(outcome, "built"\)[\s\S]*strcontains\(outcome, "reused"\)',
            "most expensive masters": r"sum\(total_ms\)[\s\S]*by key",
            "bytes out per hour": r"sum\(bytes_out\)[\s\S]*bin\(1h\)",
            "many store round trips": r"store_round_trips > \d+",
        }
        for question, pattern in questions.items():
            with self.subTest(question):
                self.assertTrue(any(re.search(pattern, q) for q in self.queries), f"no query answers {question}")
        for q in self.queries:
            if "@" not in q:  # the Lambda's own lines are not request lines
                self.assertIn(f'message = "{REQUEST_MESSAGE}"', q, "request queries keep to the request lines")

    def test_the_tables_are_the_contract(self):
        self.assertEqual(table_first_column(self.text, "| field | meaning |"), LOG_FIELDS)
        metrics = set()
        for cell in table_first_column(self.text, "| metric | unit | dimensions |"):
            metrics.add(cell)
        self.assertEqual(metrics, ct.EMF_METRICS)
        for region in ct.EDGE_REGIONS:
            self.assertIn(region, self.text, "the doc lists the Regions the dashboard charts")

    def test_the_anchors_the_alarms_and_deploy_point_at_exist(self):
        anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", self.text, flags=re.M)}
        for source in (ROOT / "infra" / "template.yaml", ROOT / "infra" / "deploy.sh", DOC):
            for anchor in re.findall(r"operations\.md#([\w-]+)", source.read_text(encoding="utf-8")):
                with self.subTest(f"{source.name}#{anchor}"):
                    self.assertIn(anchor, anchors)
            for anchor in re.findall(r"\]\(#([\w-]+)\)", source.read_text(encoding="utf-8")):
                with self.subTest(f"{source.name} link #{anchor}"):
                    self.assertIn(anchor, anchors)

    def test_the_checker_catches_drift(self):
        """The check itself: typos, unknown outcomes, commands and functions are caught; regular
        expressions with pipes, aliases and discovered fields are not mistaken for any."""
        good = [
            'filter message = "request" and outcome = "built" | sort total_ms desc | limit 5',
            'fields @timestamp, @message | filter @message like /Task timed out|Runtime exited/',
            'stats sum(bytes_out) as b, count(*) as n, b / n as avg_b by bin(1h) as hour | sort hour desc',
            'filter message = "request" | stats sum(strcontains(outcome, "reused")) as r by key',
            'filter @type = "REPORT" | stats max(@maxMemoryUsed / 1024 / 1024) as mb',
        ]
        for q in good:
            with self.subTest(q):
                self.assertEqual(problems(q), [])
        bad = {
            'filter message = "request" | sort totl_ms desc': "not a field of the log line: totl_ms",
            'filter outcome = "cached"': "outcome 'cached'",
            'filter message = "req"': "message 'req'",
            'stats sum(strcontains(outcome, "hit")) as h': "outcome 'hit'",
            'fields key | head 5': "not a Logs Insights command: head",
            'stats median(total_ms)': "not a Logs Insights function: median",
            'stats count(*) as n | sort n desc, duration_ms': "not a field of the log line: duration_ms",
            'stats sum(total_ms) as total_ms by key': "alias total_ms hides",
            'fields @durationMs': "not a field Logs Insights discovers: @durationMs",
        }
        for q, want in bad.items():
            with self.subTest(q):
                self.assertTrue(any(want in p for p in problems(q)), problems(q))


if __name__ == "__main__":
    unittest.main()
