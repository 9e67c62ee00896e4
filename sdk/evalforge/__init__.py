"""EvalForge SDK: one-line, zero-impact tracing for OpenAI and Anthropic apps.

    import evalforge
    evalforge.init()                       # EVALFORGE_API_KEY / EVALFORGE_ENDPOINT
    client = evalforge.wrap(OpenAI())      # or evalforge.instrument()
    prompt = evalforge.get_prompt("support")  # versioned prompts, cached; prompt.compile(**vars)

Everything is a no-op until ``init``. Spans follow the OpenTelemetry GenAI semantic conventions and
are exported in the background over OTLP/HTTP; nothing here raises into, blocks, or slows your code.
"""

from . import ab
from ._client import flush, init, shutdown, stats
from ._context import context
from ._prompts import Prompt, get_prompt
from ._experiment import ExperimentError, ExperimentResult, arun_experiment, run_experiment
from ._tracing import current_trace_id, observe, score, span
from ._wrap import instrument, wrap

__all__ = [
    "init",
    "ab",
    "wrap",
    "instrument",
    "observe",
    "span",
    "context",
    "score",
    "flush",
    "shutdown",
    "stats",
    "current_trace_id",
    "get_prompt",
    "Prompt",
    "run_experiment",
    "arun_experiment",
    "ExperimentResult",
    "ExperimentError",
]
__version__ = "0.1.0"
