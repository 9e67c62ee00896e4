"""A small app instrumented with the unmodified Langfuse SDK; run as a script by the tests, so its
global OpenTelemetry provider is its own. Prints the ids it produced as JSON.

usage: python -m tests.dropin.langfuse_app BASE_URL PUBLIC_KEY SECRET_KEY
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone

from langfuse import Langfuse, propagate_attributes


def main(base_url: str, public_key: str, secret_key: str) -> None:
    langfuse = Langfuse(public_key=public_key, secret_key=secret_key, base_url=base_url)
    auth_ok = langfuse.auth_check()
    with propagate_attributes(user_id="user-42", session_id="sess-9", tags=["beta", "checkout"],
                              trace_name="support-ticket", metadata={"tier": "gold"}):
        with langfuse.start_as_current_observation(name="answer-ticket", as_type="span",
                                                   input={"ticket": "Where is my order?"}) as root:
            with langfuse.start_as_current_observation(
                name="draft-reply", as_type="generation", model="gpt-4o-mini",
                model_parameters={"temperature": 0.2, "max_tokens": 256},
                input=[{"role": "user", "content": "Where is my order?"}],
            ) as generation:
                first_token = datetime.now(timezone.utc) + timedelta(milliseconds=150)
                generation.update(
                    output={"role": "assistant", "content": "It ships tomorrow."},
                    usage_details={"input": 120, "cache_read_input_tokens": 30, "output": 25},
                    cost_details={"input": 0.0001, "output": 0.0002},
                    completion_start_time=first_token,
                )
                generation_id = generation.id
            root.update(output={"reply": "It ships tomorrow."})
            trace_id = langfuse.get_current_trace_id()
            root_id = root.id
    langfuse.create_score(name="helpfulness", value=0.75, trace_id=trace_id, observation_id=generation_id,
                          comment="clear answer")
    langfuse.create_score(name="resolved", value="yes", trace_id=trace_id, data_type="CATEGORICAL")
    langfuse.flush()
    langfuse.shutdown()
    print(json.dumps({"auth_ok": auth_ok, "trace_id": trace_id, "root_id": root_id,
                      "generation_id": generation_id}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
