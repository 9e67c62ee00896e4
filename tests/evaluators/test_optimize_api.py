"""Prompt optimisation through the real app and its background worker, against stub models on the fake
OpenAI server: a target that answers in the expected form only when its system prompt carries an
instruction, and an optimiser model whose proposals do or do not carry it."""

from __future__ import annotations

import asyncio
import json
import re
import time

import psycopg
from psycopg.types.json import Jsonb
import pytest
from scipy import stats

from core import prompts
from evaluators.optimizer import prompt_store, store
from evaluators.routers.optimize import OptimizeIn, job_spec
from tests.waiting import wait_until

from .fake_llm import FakeLLMServer, Reply

INSTRUCTION = "Reply with the number only."
USER = {"role": "user", "content": "What is {{a}} times {{b}}?"}
BASE_PROMPT = [{"role": "system", "content": "You are a maths tutor."}, USER]
PAIRS = [(2 + i % 9, 3 + (i * 7) % 11) for i in range(60)]  # 60 items: 24 holdout, 12 train, 24 dev


def target(body: dict) -> str:
    """Right in form only with the instruction, or when ``a`` is a multiple of 3 (a third of the items)."""
    system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
    a, b = map(int, re.findall(r"\d+", body["messages"][-1]["content"]))
    return str(a * b) if INSTRUCTION in system or a % 3 == 0 else f"Let me see: {a} times {b} is {a * b}."


def proposing(*systems: str):
    """An optimiser model that always proposes these system prompts (with the user message kept)."""
    reply = json.dumps({"candidates": [{"prompt": [{"role": "system", "content": s}, USER], "rationale": f"try {s!r}"}
                                       for s in systems]})
    return lambda body: reply


@pytest.fixture
def stub():
    server = FakeLLMServer().start()
    server.responders["target-model"] = target
    yield server
    server.stop()


def pg(stack, work):
    async def go():
        async with await psycopg.AsyncConnection.connect(stack.postgres_url, autocommit=True) as conn:
            return await work(conn)
    return asyncio.run(go())


def setup(stack, pairs=PAIRS, name="tutor", prompt=BASE_PROMPT) -> tuple[str, str, str]:
    project_id, key = stack.create_key()
    r = stack.client.post("/api/v1/datasets", headers=stack.headers(key), json={
        "name": "products", "items": [{"input": {"a": a, "b": b}, "expected_output": str(a * b)} for a, b in pairs]})
    assert r.status_code == 201, r.text
    pg(stack, lambda conn: prompts.create_version(conn, project_id, name, prompt=prompt, labels=("production",)))
    return project_id, key, r.json()["id"]


def body(stub, dataset_id: str, **extra) -> dict:
    model = {"model": "target-model", "base_url": stub.openai_base_url}
    return {"dataset_id": dataset_id, "evaluators": [{"evaluator": "exact_match"}], "target": model,
            "optimizer_model": {**model, "model": "optimizer-model"}, "budget": {"max_calls": 1000, "max_usd": 5},
            "rounds": 1, "candidates_per_round": 4, "seed": 3, **extra}


def run_job(stack, key, payload, name="tutor") -> dict:
    r = stack.client.post(f"/api/v1/prompts/{name}/optimize", headers=stack.headers(key), json=payload)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def finished():
        job = stack.client.get(f"/api/v1/prompts/{name}/optimize/{job_id}", headers=stack.headers(key)).json()
        return job if job["status"] in store.FINISHED else None

    job = wait_until(finished, timeout=120)
    assert job["status"] == "completed", job
    return job


def test_the_optimiser_finds_the_instruction_and_the_holdout_test_accepts_it_as_an_unlabelled_version(stack, stub):
    project_id, key, dataset_id = setup(stack)
    winner = f"You are a maths tutor. {INSTRUCTION}"
    stub.responders["optimizer-model"] = proposing("Be kind.", "Take a deep breath.", winner, "Use words.")
    job = run_job(stack, key, body(stub, dataset_id))
    d = job["decision"]
    assert d["accepted"] is True, d
    # every model call counted: baseline on 24 dev items, 1 proposal, the race (4 x 6, 2 x 6 more, 1 x 12
    # more), both sides of the 24-item holdout -- and exactly what the stub server received
    assert job["progress"]["calls"] == 24 + 1 + 48 + 48 == len(stub.requests)
    history = {c["id"]: c for c in job["history"]}
    assert history["baseline"]["dev"]["mean"] == pytest.approx(1 / 3, abs=0.2)
    best = history["r1c3"]
    assert best["status"] == "best" and best["dev"] == {"n": 24, "mean": 1.0}
    assert [s["items"] for s in best["race"]] == [6, 12, 24]
    assert {history[c]["status"] for c in ("r1c1", "r1c2", "r1c4")} == {"eliminated"}
    assert job["progress"]["best"] == "r1c3" and job["progress"]["round"] == 1

    # the new version: the winning prompt, unlabelled; production still on the base version
    assert job["result_version"] == 2
    new = pg(stack, lambda conn: prompts.get_version(conn, project_id, "tutor", version=2))
    assert new["prompt"] == [{"role": "system", "content": winner}, USER]
    assert "production" not in new["labels"] and job["id"] in new["message"]
    prod = pg(stack, lambda conn: prompts.get_version(conn, project_id, "tutor", label="production"))
    assert prod["version"] == 1

    # the holdout comparison is two experiments; its p-value is scipy's one-sided exact McNemar on their pairs
    h = stack.headers(key)
    base_id, cand_id = job["experiments"]["baseline"], job["experiments"]["candidate"]
    passed = {}
    for eid in (base_id, cand_id):
        items = stack.client.get(f"/api/v1/experiments/{eid}/items", headers=h).json()["items"]
        assert len(items) == 24
        passed[eid] = {i["item_id"]: i["scores"][0]["passed"] for i in items}
    assert passed[base_id].keys() == passed[cand_id].keys()
    only_cand = sum(1 for i in passed[base_id] if passed[cand_id][i] and not passed[base_id][i])
    only_base = sum(1 for i in passed[base_id] if passed[base_id][i] and not passed[cand_id][i])
    assert only_base == 0 and only_cand > 0
    assert d["test"]["test"] == "mcnemar_exact"
    assert d["test"]["p_value"] == stats.binomtest(only_cand, only_base + only_cand, 0.5,
                                                   alternative="greater").pvalue < 0.05
    compared = stack.client.post("/api/v1/experiments/compare", headers=h, json={"experiment_ids": [base_id, cand_id]})
    assert compared.json()["comparisons"][0]["metrics"]["exact_match"]["delta"] == d["test"]["delta"]

    # every model call is a trace tagged with the job: the item runs and the optimiser's proposal
    def traces():
        rows = stack.clickhouse.query(
            "SELECT uniqExact(trace_id), countIf(name = 'optimizer.propose') FROM spans FINAL "
            "WHERE project_id = {p:String} AND attributes['evalforge.optimization_id'] = {j:String}",
            parameters={"p": project_id, "j": job["id"]}).result_rows[0]
        return rows if rows[0] == 121 else None
    assert wait_until(traces, timeout=60) == (121, 1)


def test_a_judged_objective_shows_the_judges_reasons_to_the_optimiser_and_counts_its_calls(stack, stub):
    """An LLM judge (numeric, through the project's judge rate limit) is the objective: the holdout test
    is Wilcoxon's, and the judge's calls count against the budget like every other."""
    project_id, key, dataset_id = setup(stack, pairs=PAIRS[:14])  # 6 holdout, 3 train, 5 dev
    stub.responders["strict-model"] = lambda body: target(body) if INSTRUCTION in json.dumps(body) else "Let me see."
    stub.responders["judge-model"] = lambda body: (
        '{"score": 1, "reasoning": "the answer has extra words"}' if "Let me see" in json.dumps(body["messages"])
        else '{"score": 5, "reasoning": "just the number"}')
    stub.responders["optimizer-model"] = proposing("Be kind.", f"You are a maths tutor. {INSTRUCTION}")
    judge = {"evaluator": "llm_judge", "config": {"model": "judge-model", "base_url": stub.openai_base_url,
                                                  "rubric": "helpfulness", "max_retries": 0}}
    payload = body(stub, dataset_id, evaluators=[judge], candidates_per_round=2)
    payload["target"]["model"] = "strict-model"
    job = run_job(stack, key, payload)
    d = job["decision"]
    assert d["objective"] == "llm_judge" and d["accepted"] is True, d
    # target + judge per item run: baseline 5 dev, race 2 x 3 then 2 more, holdout 2 x 6; one proposal
    assert job["progress"]["calls"] == 2 * (5 + 6 + 2 + 12) + 1 == len(stub.requests)
    proposal = next(r for r in stub.requests if r.body["model"] == "optimizer-model")
    assert "the answer has extra words" in proposal.body["messages"][-1]["content"]
    base_id, cand_id = job["experiments"]["baseline"], job["experiments"]["candidate"]
    values = {}
    for eid in (base_id, cand_id):
        items = stack.client.get(f"/api/v1/experiments/{eid}/items", headers=stack.headers(key)).json()["items"]
        values[eid] = {i["item_id"]: i["scores"][0]["value"] for i in items}
    ids = sorted(values[base_id])
    expected = stats.wilcoxon([values[cand_id][i] for i in ids], [values[base_id][i] for i in ids],
                              alternative="greater").pvalue
    assert d["test"]["test"] == "wilcoxon" and d["test"]["p_value"] == pytest.approx(expected, rel=1e-12)
    assert d["test"]["p_value"] < 0.05 and d["holdout"]["candidate"]["mean"] == 5.0
    assert job["result_version"] == 2


def test_no_candidate_better_than_the_baseline_proposes_no_version(stack, stub):
    project_id, key, dataset_id = setup(stack)
    stub.responders["optimizer-model"] = proposing("Be kind.", "Use words.")
    job = run_job(stack, key, body(stub, dataset_id, rounds=2, candidates_per_round=2))
    d = job["decision"]
    assert d["accepted"] is False and d["reason"] == "no candidate beat the baseline on dev"
    assert job["result_version"] is None and job["experiments"] == {"baseline": None, "candidate": None}
    # round 2: the same two prompts again are refused as already tried (after one retry)
    log = job["progress"]["round_log"]
    assert [r["proposed"] for r in log] == [2, 0] and "already tried" in log[1]["error"]
    assert job["progress"]["calls"] == len(stub.requests)
    latest = pg(stack, lambda conn: prompts.get_version(conn, project_id, "tutor", label="latest"))
    assert latest["version"] == 1


def test_an_exhausted_budget_stops_the_job_with_what_it_had(stack, stub):
    _, key, dataset_id = setup(stack)
    stub.responders["optimizer-model"] = proposing("Be kind.", "Take a deep breath.", f"Hi. {INSTRUCTION}", "Use words.")
    # 40 calls: the baseline (24), a proposal (1) and two candidates' first slices (6 each) fit; the
    # third candidate's slice would pass the cap, so the job stops there -- before the winner is scored
    job = run_job(stack, key, body(stub, dataset_id, budget={"max_calls": 40, "max_usd": 5}))
    assert job["progress"]["calls"] == 37 == len(stub.requests)
    assert job["decision"]["accepted"] is False and "budget ran out" in job["decision"]["reason"]
    assert "scoring r1c3 on 6 dev items needs 6 more calls" in job["decision"]["stopped_early"]
    # 100 calls: the race ends (73) with a better prompt on dev, but both holdout runs (48) do not fit
    stub.requests.clear()
    job = run_job(stack, key, body(stub, dataset_id, budget={"max_calls": 100, "max_usd": 5}))
    assert job["progress"]["calls"] == 73 == len(stub.requests)
    assert job["decision"]["best_candidate"] == "r1c3" and job["decision"]["dev"]["best"] == 1.0
    assert (job["decision"]["accepted"], job["decision"]["reason"]) == (False, "budget exhausted, no decision")
    assert job["result_version"] is None


def test_the_baseline_is_priced_on_a_first_slice_and_retries_count_as_calls(stack, stub):
    """A priced target (gpt-4o-mini: 120 + 30 tokens a reply, $0.000036) and $0.0001: the baseline's
    first 2 dev items show that the other 22 would pass the cap, so they are never sent; the two 500s
    the target answered first (and the client retried) count as calls."""
    _, key, dataset_id = setup(stack)
    stub.responders["gpt-4o-mini"] = target
    stub.script = [Reply(status=500), Reply(status=500)]
    payload = body(stub, dataset_id, budget={"max_calls": 1000, "max_usd": 0.0001}, max_concurrency=1)
    payload["target"]["model"] = "gpt-4o-mini"
    job = run_job(stack, key, payload)
    assert len(stub.requests) == 4 and job["progress"]["calls"] == 4
    assert job["progress"]["usd"] == pytest.approx(2 * (120 * 0.15 + 30 * 0.6) / 1e6, rel=1e-9)
    assert "scoring baseline on 22 dev items" in job["decision"]["stopped_early"]


@pytest.mark.parametrize("created", [True, False])
def test_a_job_resumed_after_its_holdout_decision_finishes_without_running_it_again(stack, stub, created):
    """The worker died after deciding (and, with ``created``, after saving the new version): the
    resumed run records the decision and the one version, and calls no model."""
    project_id, key, dataset_id = setup(stack)
    better = [{"role": "system", "content": f"You are a maths tutor. {INSTRUCTION}"}, USER]
    decision = {"objective": "exact_match", "best_candidate": "r1c1", "accepted": True, "reason": "better"}

    async def queue_decided_job(conn):
        spec = job_spec(OptimizeIn.model_validate(body(stub, dataset_id)), 1)
        async with conn.transaction():  # the stack's worker sees the job only with its state
            job_id = await store.create(conn, project_id, "tutor", 1, dataset_id, 1, spec)
            message = f"prompt optimisation {job_id}: accepted"
            version = None
            if created:
                base = await prompts.get_version(conn, project_id, "tutor", version=1)
                version = (await prompt_store.create_unlabelled_version(conn, project_id, "tutor", base, better,
                                                                        message))["version"]
            state = {"objective": "exact_match", "rounds": [{"round": 1, "proposed": 1}],
                     "candidates": [{"id": c, "prompt": p, "round": r, "rationale": "", "status": st, "values": {},
                                     "rows": {}} for c, p, r, st in (("baseline", BASE_PROMPT, 0, "baseline"),
                                                                      ("r1c1", better, 1, "best"))],
                     "outcome": {"decision": decision, "message": message, "version": version}}
            await conn.execute("UPDATE prompt_optimizations SET state = %s WHERE id = %s",
                               (Jsonb(state), job_id))
        return job_id

    job_id = pg(stack, queue_decided_job)
    h = stack.headers(key)
    job = wait_until(lambda: (j := stack.client.get(f"/api/v1/prompts/tutor/optimize/{job_id}", headers=h).json())
                     ["status"] in store.FINISHED and j, timeout=60)
    assert job["status"] == "completed" and job["decision"] == decision and job["result_version"] == 2
    assert len(stub.requests) == 0
    versions = pg(stack, lambda conn: prompts.list_versions(conn, project_id, "tutor"))
    assert sorted(v["version"] for v in versions) == [1, 2]
    assert pg(stack, lambda conn: prompts.get_version(conn, project_id, "tutor", version=2))["prompt"] == better


def test_a_resumed_job_counts_the_calls_its_dead_worker_had_under_way(stack, stub):
    """The saved state holds 24 calls of a step that never got charged (its worker died during it):
    the resumed run counts them as spent, on top of every request it makes itself."""
    project_id, key, dataset_id = setup(stack)
    stub.responders["optimizer-model"] = proposing("Be kind.")

    async def queue_resumed_job(conn):
        spec = job_spec(OptimizeIn.model_validate(body(stub, dataset_id, candidates_per_round=1)), 1)
        state = {"budget": {"calls": 5, "usd": 0.0, "item_runs": 0, "item_usd": 0.0, "held_calls": 24,
                            "held_usd": 0.0}}
        async with conn.transaction():
            job_id = await store.create(conn, project_id, "tutor", 1, dataset_id, 1, spec)
            await conn.execute("UPDATE prompt_optimizations SET state = %s WHERE id = %s", (Jsonb(state), job_id))
        return job_id

    job_id = pg(stack, queue_resumed_job)
    h = stack.headers(key)
    job = wait_until(lambda: (j := stack.client.get(f"/api/v1/prompts/tutor/optimize/{job_id}", headers=h).json())
                     ["status"] in store.FINISHED and j, timeout=60)
    assert job["status"] == "completed" and job["decision"]["reason"] == "no candidate beat the baseline on dev"
    assert len(stub.requests) == 24 + 1 + 24  # baseline, proposal, the one candidate on all of dev
    assert job["progress"]["calls"] == 5 + 24 + len(stub.requests)


def test_a_cancelled_job_stops_calling_models(stack, stub):
    _, key, dataset_id = setup(stack)
    stub.responders["optimizer-model"] = proposing("Be kind.")
    stub.delay_s = 0.5
    h = stack.headers(key)
    r = stack.client.post("/api/v1/prompts/tutor/optimize", headers=h, json=body(stub, dataset_id, max_concurrency=1))
    job_id = r.json()["job_id"]
    wait_until(lambda: stub.requests, timeout=30)
    assert stack.client.post(f"/api/v1/prompts/tutor/optimize/{job_id}/cancel", headers=h).json()["status"] == "cancelled"
    # the batch in flight (the baseline's first 2 dev items, one at a time) ends; the rest of dev that
    # would follow at once is never asked for
    wait_until(lambda: len(stub.requests) == 2, timeout=30)
    time.sleep(1.5)
    assert len(stub.requests) == 2
    job = stack.client.get(f"/api/v1/prompts/tutor/optimize/{job_id}", headers=h).json()
    assert job["status"] == "cancelled" and job["result_version"] is None
    again = stack.client.post(f"/api/v1/prompts/tutor/optimize/{job_id}/cancel", headers=h)
    assert again.status_code == 409 and again.json()["error"].startswith("status:")


def test_a_job_whose_workers_keep_dying_is_marked_failed_not_resumed_forever(stack):
    project_id, _, dataset_id = setup(stack, pairs=PAIRS[:10])

    async def orphan(conn):
        job_id = await store.create(conn, project_id, "tutor", 1, dataset_id, 1, {})
        await conn.execute("UPDATE prompt_optimizations SET status = 'running', attempts = %s WHERE id = %s",
                           (store.MAX_ATTEMPTS, job_id))
        await store.release_orphans(conn)  # (the stack's own worker may have swept it first)
        return await store.get(conn, job_id, project_id)

    job = pg(stack, orphan)
    assert job["status"] == "failed" and job["error"] == "its worker stopped mid-run 3 times; start a new one"


def test_jobs_are_scoped_to_their_project_and_bad_input_names_the_field(stack, stub):
    _, key, dataset_id = setup(stack, pairs=PAIRS[:20])
    _, other_key, other_dataset = setup(stack, pairs=PAIRS[:20])
    h = stack.headers(key)

    def post(payload, name="tutor"):
        return stack.client.post(f"/api/v1/prompts/{name}/optimize", headers=h, json=payload)

    good = body(stub, dataset_id, budget={"max_calls": 1, "max_usd": 1})
    started = post(good)
    assert started.status_code == 202
    job_id = started.json()["job_id"]
    # another project sees neither the job, nor may it use this project's dataset or prompt
    assert stack.client.get(f"/api/v1/prompts/tutor/optimize/{job_id}", headers=stack.headers(other_key)).status_code == 404
    assert stack.client.get("/api/v1/prompts/tutor/optimize", headers=stack.headers(other_key)).json()["jobs"] == []
    assert [j["job_id"] for j in stack.client.get("/api/v1/prompts/tutor/optimize", headers=h).json()["jobs"]] == [job_id]
    r = post({**good, "dataset_id": other_dataset})
    assert r.status_code == 404 and r.json()["error"].startswith("dataset_id:")
    r = post(good, name="nonexistent")
    assert r.status_code == 404 and r.json()["error"].startswith("base:")
    assert stack.client.get(f"/api/v1/prompts/other/optimize/{job_id}", headers=h).status_code == 404

    for payload, field in [
        ({k: v for k, v in good.items() if k != "budget"}, "budget"),
        ({**good, "rounds": 0}, "rounds"),
        ({**good, "budget": {"max_calls": 10, "max_usd": -1}}, "budget.max_usd"),
        ({**good, "evaluators": []}, "evaluators"),
        ({**good, "evaluators": [{"evaluator": "no_such"}]}, "evaluators[0].evaluator"),
        ({**good, "base": {"version": 1, "label": "production"}}, "base"),
        ({**good, "base": {"version": 7}}, "base"),
        ({**good, "base": {"label": "Not A Label"}}, "base.label"),
        ({**good, "target": {**good["target"], "base_url": "http://10.1.2.3/v1"}}, "target.base_url"),
        ({**good, "optimizer_model": {"model": "m", "base_url": "http://169.254.169.254/"}}, "optimizer_model.base_url"),
        ({**good, "dataset_id": "nope"}, "dataset_id"),
        ({**good, "holdout_fraction": 0.1, "train_fraction": 0.5}, None),  # 20 items still leave 2 holdout / 2 dev
        ({**good, "surprise": 1}, "surprise"),
        # the objective must be a score the evaluators give; model params must make a client
        ({**good, "objective": "llm_judge"}, "objective"),
        ({**good, "objective": "exact_match"}, None),
        ({**good, "optimizer_model": {**good["optimizer_model"], "params": {"temperature": 5}}},
         "optimizer_model.params.temperature"),
        ({**good, "target": {**good["target"], "params": {"max_tokens": 0}}}, "target.params.max_tokens"),
        ({**good, "optimizer_model": None, "target": {**good["target"], "params": {"temperature": "hot"}}},
         "target.params.temperature"),
    ]:
        r = post(payload)
        if field is None:
            assert r.status_code == 202, r.text
            continue
        assert r.status_code in (400, 404), (field, r.text)
        assert r.json()["error"].startswith(f"{field}:") or r.json()["error"].startswith(f"{field}."), (field, r.json())
    # too few items to split, and a prompt whose variables the items lack
    _, small_key, small = setup(stack, pairs=PAIRS[:3])
    r = stack.client.post("/api/v1/prompts/tutor/optimize", headers=stack.headers(small_key), json=body(stub, small))
    assert r.status_code == 400 and r.json()["error"].startswith("dataset_id: needs at least 2 dev")
    _, vkey, vds = setup(stack, pairs=PAIRS[:20], name="asks", prompt=[{"role": "user", "content": "{{question}}"}])
    r = stack.client.post("/api/v1/prompts/asks/optimize", headers=stack.headers(vkey), json=body(stub, vds))
    assert r.status_code == 400 and r.json()["error"].startswith("base: prompt variables ['question']")
    # the three jobs accepted above stop at once (1 call cannot cover the baseline); leave none running
    def all_finished():
        jobs = stack.client.get("/api/v1/prompts/tutor/optimize", headers=h).json()["jobs"]
        return all(j["status"] in store.FINISHED for j in jobs) and jobs

    jobs = wait_until(all_finished, timeout=60)
    assert len(jobs) == 3 and all("budget ran out" in j["decision"]["reason"] for j in jobs)
    assert len(stub.requests) == 0
