"""EvalForge evaluators: heuristic and LLM-as-judge scoring of spans, criteria and test generation.

Build an evaluator from a stored eval rule with ``get_evaluator(name, config)`` and call
``evaluate(span_or_trace) -> list[Score]``; ``Score.to_row(...)`` gives a ``scores`` table row.
"""

from evaluators import heuristics, judge, pii, similarity  # noqa: F401  (register the evaluators)
from evaluators.agreement import AgreementResult, agreement
from evaluators.base import Evaluator, EvaluatorConfig, Score, Subject, subject_of
from evaluators.criteria import ProposedCriterion, heuristic_criteria, propose_criteria
from evaluators.judge import LLMJudge, parse_judgment
from evaluators.llm import InMemorySpendLedger, JudgeError, JudgeGuard, LLMCall, LLMClient, LLMSettings, per_token_cost
from evaluators.registry import evaluator_names, get_evaluator, validate_config
from evaluators.synthetic import DatasetRow, generate_tests, template_variables

__all__ = [
    "AgreementResult",
    "DatasetRow",
    "ProposedCriterion",
    "Evaluator",
    "EvaluatorConfig",
    "InMemorySpendLedger",
    "JudgeError",
    "JudgeGuard",
    "LLMCall",
    "LLMClient",
    "LLMJudge",
    "LLMSettings",
    "Score",
    "Subject",
    "agreement",
    "evaluator_names",
    "generate_tests",
    "heuristic_criteria",
    "propose_criteria",
    "template_variables",
    "get_evaluator",
    "parse_judgment",
    "per_token_cost",
    "subject_of",
    "validate_config",
]
