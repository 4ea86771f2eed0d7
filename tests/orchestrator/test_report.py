"""The HTML report's escaping, in process: what a run's data can put into the page is text, never markup.

The page as a whole (figures, sections, one self-contained file) is tested through the command in
test_results.py; this pins the one property a template change could silently break.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from asiarch.orchestrator.access import RunInfo
from asiarch.orchestrator.results import report
from asiarch.orchestrator.results.fetch import RunData
from asiarch.v1 import common_pb2

HOSTILE = "<script>alert('x')</script>"


def hostile_run() -> RunData:
    """A confirmed top design whose every text field (and the run's metadata) carries a script tag."""
    design = common_pb2.Experiment(
        id=f"r-1{HOSTILE}",
        run_id="r",
        name=f"wide {HOSTILE}",
        cycle=1,
        status=common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
        parent_ids=[HOSTILE],
    )
    design.fitness.total = 0.5
    design.fitness.judge.judged_by = HOSTILE
    design.confirmation.confirmed = True
    design.proposal.motivation = HOSTILE
    design.proposal.source.module_source = f"class DeltaNet:\n    '''{HOSTILE}'''\n"
    design.analysis.results_analysis = HOSTILE
    design.analysis.synthesis = HOSTILE
    design.analysis.breakthrough_reason = HOSTILE
    metadata = {"state": HOSTILE, "message": HOSTILE, "options": {"llm": HOSTILE}, "started_at": HOSTILE}
    return RunData(RunInfo(Path("/nonexistent"), f"r{HOSTILE}", metadata), [design])


def test_a_hostile_name_and_texts_are_escaped_everywhere() -> None:
    page = report.render(hostile_run(), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert not re.search(r"<script", page, re.I)
    escaped = page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
    # title (twice), run card, state card, started card, best card, the message, the design's heading,
    # id, parent, judge, motivation, results, synthesis, reason, code
    assert escaped >= 16, escaped
    assert 'id="design-r-1&lt;script&gt;' in page
    # the options are JSON, escaped as a whole
    assert "options: {&#34;llm&#34;: &#34;&lt;script&gt;" in page
