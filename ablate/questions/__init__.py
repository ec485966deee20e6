"""Research questions, one module each: its analysis (typed entries from ablate.stats
functions), its tables, its prose and its figures. The registry order is the order of the
analysis and of the report; a new question is one module and one line here (or a
``register_question`` call where it is defined).

    >>> analysis = analyze_records(records, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> [question.key for question in QUESTIONS]  # doctest: +SKIP
    ['levels', 'q1', 'q2', 'q3', 'q4', 'q5', 'scans', 'power']
"""

from __future__ import annotations

from ablate.questions.analysis import analyze_records
from ablate.questions.base import Evidence, Question
from ablate.questions.control import CONTROL
from ablate.questions.depth import DEPTH
from ablate.questions.iterations import ITERATIONS
from ablate.questions.latents import LATENTS
from ablate.questions.levels import LEVELS
from ablate.questions.power import POWER
from ablate.questions.registry import (
    QUESTIONS,
    get_question,
    register_question,
    unregister_question,
)
from ablate.questions.site_scan import SITE_SCAN
from ablate.questions.tables import table_views, tables_from_analysis
from ablate.questions.trend import TREND

register_question(LEVELS)
register_question(TREND)
register_question(CONTROL)
register_question(ITERATIONS)
register_question(DEPTH)
register_question(LATENTS)
register_question(SITE_SCAN)
register_question(POWER)

__all__ = [
    "QUESTIONS",
    "Evidence",
    "Question",
    "analyze_records",
    "get_question",
    "register_question",
    "table_views",
    "tables_from_analysis",
    "unregister_question",
]
