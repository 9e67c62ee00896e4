"""Which attribute of which instrumentation convention fills which canonical column.

``_SLOTS`` maps an attribute key to (slot, rank): a lower rank wins when several conventions give the
same value (``evalforge.*`` > OTel GenAI > Langfuse > OpenInference > OpenLLMetry). ``ingest.normalize``
applies the table; adding a convention is adding rows here.
"""

from __future__ import annotations

import re

# attribute key -> (slot, rank); lower rank wins. Slot names are internal.
_SLOTS: dict[str, tuple[str, int]] = {}


def _register(slot: str, *keys: str) -> None:
    for rank, key in enumerate(keys):
        _SLOTS[key] = (slot, rank)


_register("kind", "evalforge.span.kind", "openinference.span.kind", "langfuse.observation.type",
          "traceloop.span.kind")
_register("operation", "evalforge.operation", "gen_ai.operation.name", "llm.request.type")
_register("provider", "evalforge.provider", "gen_ai.provider.name", "gen_ai.system", "llm.provider",
          "llm.system")
_register("request_model", "evalforge.request_model", "gen_ai.request.model", "llm.request.model_name")
_register("response_model", "evalforge.model", "gen_ai.response.model", "langfuse.observation.model.name",
          "llm.model_name", "llm.response.model")
_register("input_tokens", "evalforge.usage.input_tokens", "gen_ai.usage.input_tokens",
          "gen_ai.usage.prompt_tokens", "llm.token_count.prompt", "llm.usage.prompt_tokens")
_register("output_tokens", "evalforge.usage.output_tokens", "gen_ai.usage.output_tokens",
          "gen_ai.usage.completion_tokens", "llm.token_count.completion", "llm.usage.completion_tokens")
_register("total_tokens", "evalforge.usage.total_tokens", "gen_ai.usage.total_tokens",
          "llm.token_count.total", "llm.usage.total_tokens")
_register("cache_read", "evalforge.usage.cache_read_tokens", "gen_ai.usage.cache_read.input_tokens",
          "gen_ai.usage.cache_read_input_tokens", "llm.token_count.prompt_details.cache_read",
          "llm.usage.cache_read_input_tokens")
_register("cache_creation", "evalforge.usage.cache_creation_tokens",
          "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens",
          "llm.token_count.prompt_details.cache_write", "llm.usage.cache_creation_input_tokens")
_register("reasoning", "evalforge.usage.reasoning_tokens", "gen_ai.usage.reasoning.output_tokens",
          "gen_ai.usage.reasoning_tokens", "llm.token_count.completion_details.reasoning",
          "llm.usage.reasoning_tokens")
_register("ttft_ms", "evalforge.ttft_ms")
_register("ttft_s", "gen_ai.response.time_to_first_chunk")
_register("completion_start", "langfuse.observation.completion_start_time")
# input/output ranks leave gaps for the indexed message lists assembled below
_register("input", "evalforge.input", "gen_ai.input.messages", "langfuse.observation.input")
_register("output", "evalforge.output", "gen_ai.output.messages", "langfuse.observation.output")
_SLOTS.update({"gen_ai.tool.call.arguments": ("input", 5), "gen_ai.retrieval.query.text": ("input", 5),
               "ai.prompt.messages": ("input", 5), "ai.toolCall.args": ("input", 5), "ai.toolCall.input": ("input", 5),
               "input.value": ("input", 6), "traceloop.entity.input": ("input", 6), "ai.prompt": ("input", 6),
               "gen_ai.prompt": ("input", 7), "request_data": ("input", 8)})
_SLOTS.update({"gen_ai.tool.call.result": ("output", 5), "gen_ai.retrieval.documents": ("output", 5),
               "ai.response.text": ("output", 5), "ai.response.toolCalls": ("output", 5),
               "ai.toolCall.result": ("output", 5), "ai.toolCall.output": ("output", 5),
               "output.value": ("output", 6), "traceloop.entity.output": ("output", 6),
               "gen_ai.completion": ("output", 7), "response_data": ("output", 8)})
# Vercel AI SDK (ai.*), lowest rank: its doGenerate / doStream spans also carry gen_ai.*, which win
for slot, keys in {"kind": ("ai.operationId",), "provider": ("ai.model.provider",),
                   "request_model": ("ai.model.id",), "response_model": ("ai.response.model",),
                   "input_tokens": ("ai.usage.promptTokens", "ai.usage.inputTokens"),
                   "output_tokens": ("ai.usage.completionTokens", "ai.usage.outputTokens"),
                   "total_tokens": ("ai.usage.totalTokens",), "cache_read": ("ai.usage.cachedInputTokens",),
                   "reasoning": ("ai.usage.reasoningTokens",), "ttft_ms": ("ai.response.msToFirstChunk", "ai.stream.msToFirstChunk")}.items():
    for key in keys:
        _SLOTS[key] = (slot, 50)
# the Anthropic SDK's own spans (com.anthropic.sdk.python) name cache writes so
_SLOTS["gen_ai.usage.cache_write.input_tokens"] = ("cache_creation", 2)
_register("session_id", "evalforge.session_id", "gen_ai.conversation.id", "langfuse.session.id", "session.id",
          "traceloop.association.properties.session_id")
_register("user_id", "evalforge.user_id", "langfuse.user.id", "user.id",
          "traceloop.association.properties.user_id", "llm.user")
_register("environment", "evalforge.environment", "langfuse.environment", "deployment.environment.name",
          "deployment.environment")
_register("release", "evalforge.release", "langfuse.release", "service.version")
_register("prompt_name", "evalforge.prompt.name", "langfuse.observation.prompt.name", "langfuse.prompt.name",
          "gen_ai.prompt.name")
_register("prompt_version", "evalforge.prompt.version", "langfuse.observation.prompt.version",
          "langfuse.prompt.version", "llm.prompt_template.version")
_register("cost", "evalforge.cost")
_register("cost_details", "langfuse.observation.cost_details")
_register("usage_details", "langfuse.observation.usage_details")
_register("error_type", "error.type")
_register("level", "langfuse.observation.level")
_register("level_message", "langfuse.observation.status_message")
_register("service_name", "service.name")

_TAG_KEYS = frozenset(("evalforge.tags", "tag.tags", "langfuse.trace.tags", "langfuse.tags"))
_METADATA_PREFIXES = ("evalforge.metadata.", "traceloop.association.properties.", "langfuse.trace.metadata.",
                      "langfuse.observation.metadata.", "langfuse.metadata.")
# indexed message lists: prefix -> (slot, rank, part of the key to drop after the index)
_INDEXED = {
    "llm.input_messages": ("input", 3, "message."),
    "gen_ai.prompt": ("input", 4, ""),
    "llm.output_messages": ("output", 3, "message."),
    "gen_ai.completion": ("output", 4, ""),
}
_INDEXED_PREFIXES = tuple(prefix + "." for prefix in _INDEXED)
_SPECIAL_PREFIXES = _INDEXED_PREFIXES + _METADATA_PREFIXES
_SPECIAL_KEYS = _TAG_KEYS | {"metadata"}
_TEXT_SLOTS = frozenset(("kind", "operation", "provider", "request_model", "response_model", "session_id",
                         "user_id", "environment", "release", "prompt_name", "prompt_version", "error_type",
                         "level", "level_message", "service_name"))
_DIRECT_TEXT_SLOTS = frozenset(("error_type", "session_id", "user_id", "prompt_name", "prompt_version"))
_COUNT_SLOTS = ("input_tokens", "output_tokens", "total_tokens", "cache_read", "cache_creation", "reasoning")
_TOKEN_SLOTS = frozenset(("input_tokens", "output_tokens", "total_tokens", "cache_read", "cache_creation",
                          "reasoning", "usage_details"))
_INDEXED_KEY = re.compile(r"(llm\.input_messages|llm\.output_messages|gen_ai\.prompt|gen_ai\.completion)"
                          r"\.(\d+)\.(.+)")

_KIND_ALIASES = {
    "llm": "llm", "generation": "llm", "chat": "llm", "completion": "llm", "embedding": "embedding",
    "chain": "chain", "workflow": "chain", "task": "chain", "tool": "tool", "retriever": "retriever",
    "reranker": "retriever", "agent": "agent", "evaluator": "evaluator", "span": "span",
    # Vercel AI SDK ai.operationId: the provider call is the do* span, its parent the SDK function
    "ai.generatetext.dogenerate": "llm", "ai.streamtext.dostream": "llm", "ai.generateobject.dogenerate": "llm",
    "ai.streamobject.dostream": "llm", "ai.generatetext": "chain", "ai.streamtext": "chain",
    "ai.generateobject": "chain", "ai.streamobject": "chain", "ai.toolcall": "tool", "ai.embed": "chain",
    "ai.embedmany": "chain", "ai.embed.doembed": "embedding", "ai.embedmany.doembed": "embedding",
}
# span events that mark the first token of a stream (OpenInference; OpenLLMetry's first chunk event)
FIRST_TOKEN_EVENTS = frozenset(("First Token Stream Event", "gen_ai.content.completion.chunk",
                                "llm.content.completion.chunk", "ai.stream.firstChunk"))
_OPERATION_ALIASES = {"completion": "text_completion", "embedding": "embeddings"}
_OPERATION_KINDS = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "embeddings": "embedding",
    "execute_tool": "tool", "invoke_agent": "agent", "create_agent": "agent", "retrieval": "retriever",
}
