"""The pairwise LLM judge through the real app: a fake OpenAI-protocol judge that prefers right answers
(and, between two equally good or bad ones, always the one shown first) compares three recorded runs;
the verdicts cancel its position bias, are stored, become traces, and drive the leaderboard's
Bradley–Terry ratings, which equal an independent fit."""

from __future__ import annotations

import json
import re

import numpy as np
import psycopg
import pytest

from tests.waiting import wait_until

from .fake_llm import FakeLLMServer

pytestmark = pytest.mark.timeout(240)

N_ITEMS = 6
AGENTS = {"strong": lambda i: True, "mid": lambda i: i % 2 == 0, "weak": lambda i: i % 3 == 0}


def biased_judge(body: dict) -> str:
    """Picks the answer equal to the reference; when both or neither are, picks "A" (position bias)."""
    text = body["messages"][-1]["content"]
    ref, a, b = (re.search(rf"{label}:\n(.*?)(?:\n\n|$)", text, re.S).group(1)
                 for label in ("Reference answer", "Answer A", "Answer B"))
    winner = "B" if b == ref and a != ref else "A"
    return json.dumps({"reasoning": f"{winner} matches the reference better", "winner": winner})


@pytest.fixture
def judge_server():
    server = FakeLLMServer().start()
    server.responder = biased_judge
    yield server
    server.stop()


def record_runs(stack, key, items=N_ITEMS) -> tuple[str, dict[str, str]]:
    h = stack.headers(key)
    r = stack.client.post("/api/v1/datasets", headers=h, json={
        "name": f"pairwise-{items}", "items": [{"input": {"q": f"{i} + {i}?"}, "expected_output": str(2 * i)} for i in range(items)]})
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    runs = {}
    for agent, right in AGENTS.items():
        exp = stack.client.post("/api/v1/experiments", headers=h, json={
            "name": agent, "dataset_id": dataset_id, "metadata": {"agent": agent}}).json()
        results = [{"item_id": it["id"], "output": it["expected_output"] if right(i) else f"{it['expected_output']}0",
                    "scores": [{"name": "exact_match", "value": float(right(i))}]} for i, it in enumerate(exp["items"])]
        assert stack.client.post(f"/api/v1/experiments/{exp['id']}/results", headers=h, json={"results": results}).status_code == 202
        assert stack.client.post(f"/api/v1/experiments/{exp['id']}/finish", headers=h, json={}).status_code == 200
        runs[agent] = exp["id"]
    return dataset_id, runs


def zermelo(comparisons: list[tuple[str, str, float]]) -> dict[str, float]:
    """The Bradley–Terry MLE by Zermelo's fixed-point iteration (Hunter 2004, MM), ties as half wins:
    centred log-strengths. Independent of the server's L-BFGS fit."""
    players = sorted({p for a, b, _ in comparisons for p in (a, b)})
    wins = {p: 0.0 for p in players}
    games: dict[tuple[str, str], int] = {}
    for a, b, w in comparisons:
        wins[a] += w
        wins[b] += 1 - w
        games[(a, b)] = games.get((a, b), 0) + 1
        games[(b, a)] = games.get((b, a), 0) + 1
    p = {x: 1.0 for x in players}
    for _ in range(20_000):
        p = {i: wins[i] / sum(n / (p[i] + p[j]) for (k, j), n in games.items() if k == i) for i in players}
        scale = np.exp(np.mean(np.log(list(p.values()))))
        p = {i: v / scale for i, v in p.items()}
    return {i: float(np.log(v)) for i, v in p.items()}


def test_judge_verdicts_cancel_position_bias_and_drive_bradley_terry(stack, judge_server):
    project_id, key = stack.create_key()
    h = stack.headers(key)
    dataset_id, runs = record_runs(stack, key)
    before = stack.client.get("/api/v1/leaderboards", headers=h, params={"dataset_id": dataset_id}).json()
    assert before["bradley_terry_source"] == "scores"

    body = {"experiment_ids": list(runs.values()), "judge": {"model": "judge-1", "base_url": judge_server.openai_base_url}}
    calls, answers = 0, []
    for _ in range(8):  # the project's judge rate limit (burst 10, 1 a second) may end a request early
        r = stack.client.post("/api/v1/leaderboards/pairwise", headers=h, json=body)
        assert r.status_code == 200, r.text
        answers.append(r.json())
        calls += r.json()["calls"]
        if r.json()["complete"]:
            break
        assert r.json()["stopped"]["reason"] in ("rate_limited", "time_budget")  # waits on the limit use up the budget
    final = answers[-1]
    assert final["complete"] and final["errors"] == []
    assert calls == len(judge_server.requests) == 3 * N_ITEMS * 2  # both orders, every item, nothing asked twice
    by_pair = {frozenset((p["experiment_a"], p["experiment_b"])): p for p in final["pairs"]}
    name_of = {v: k for k, v in runs.items()}

    def tally(x: str, y: str) -> tuple[int, int, int]:
        p = by_pair[frozenset((runs[x], runs[y]))]
        wx, wy = (p["wins_a"], p["wins_b"]) if p["experiment_a"] == runs[x] else (p["wins_b"], p["wins_a"])
        return wx, wy, p["ties"]

    # worked out by hand from AGENTS: a run wins where only it is right; both right or both wrong -> the
    # biased judge says "A" in both orders, which is a disagreement, i.e. a tie
    assert tally("strong", "mid") == (3, 0, 3)
    assert tally("strong", "weak") == (4, 0, 2)
    assert tally("mid", "weak") == (2, 1, 3)

    with psycopg.connect(stack.postgres_url) as conn:
        rows = conn.execute("SELECT experiment_a, experiment_b, winner, first_pick, second_pick, trace_id FROM pairwise_verdicts "
                            "WHERE project_id = %s", (project_id,)).fetchall()
    assert len(rows) == 3 * N_ITEMS
    assert any(w == "tie" and f != s for _, _, w, f, s, _ in rows)  # position bias seen, and cancelled
    assert all(w == "tie" or w == f == s for _, _, w, f, s, _ in rows)

    # a second identical request judges nothing again
    again = stack.client.post("/api/v1/leaderboards/pairwise", headers=h, json=body).json()
    assert again["calls"] == 0 and again["complete"] and len(judge_server.requests) == 3 * N_ITEMS * 2

    board = stack.client.get("/api/v1/leaderboards", headers=h, params={"dataset_id": dataset_id}).json()
    assert board["bradley_terry_source"] == "judge"
    assert [r["entry"] for r in board["bradley_terry"]] == ["strong", "mid", "weak"]
    outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}
    expected = zermelo([(name_of[a], name_of[b], outcome[w]) for a, b, w, *_ in rows])
    for r in board["bradley_terry"]:
        assert r["theta"] == pytest.approx(expected[r["entry"]], abs=1e-4)
        assert r["comparisons"] == 2 * N_ITEMS and r["theta_ci_low"] <= r["theta"] <= r["theta_ci_high"]

    # each item's two judge calls are one trace of the project
    def judge_spans():
        rows = stack.clickhouse.query(
            "SELECT trace_id, count() FROM spans FINAL WHERE project_id = {p:String} AND name = 'evalforge.pairwise_judge' "
            "GROUP BY trace_id", parameters={"p": project_id}).result_rows
        return rows if len(rows) == 3 * N_ITEMS else None

    traces = wait_until(judge_spans, timeout=60)
    assert {t for t, _ in traces} == {r[5] for r in rows} and all(n == 2 for _, n in traces)


def test_bad_pairwise_requests_name_the_field(stack, judge_server):
    _, key = stack.create_key()
    h = stack.headers(key)
    _, runs = record_runs(stack, key, items=2)
    _, other = record_runs(stack, key, items=3)
    judge = {"model": "judge-1", "base_url": judge_server.openai_base_url}
    ids = list(runs.values())

    def post(body):
        return stack.client.post("/api/v1/leaderboards/pairwise", headers=h, json=body)

    r = post({"experiment_ids": [ids[0], other["mid"]], "judge": judge})
    assert r.status_code == 400 and r.json()["error"].startswith("experiment_ids[1]: ran on other items")
    r = post({"experiment_ids": [ids[0], "nope"], "judge": judge})
    assert r.status_code == 404 and r.json()["error"].startswith("experiment_ids[1]")
    r = post({"experiment_ids": ids[:2], "judge": {"model": "j", "base_url": "http://169.254.169.254/v1"}})
    assert r.status_code == 400 and r.json()["error"].startswith("judge.base_url")
    r = post({"experiment_ids": ids[:1], "judge": judge})
    assert r.status_code == 400 and r.json()["error"].startswith("experiment_ids")
    assert judge_server.requests == []


def test_the_servers_key_never_goes_to_a_judge_url_a_member_named(stack, judge_server, monkeypatch):
    """A judge base_url is project text: the server's model key (EVALFORGE_JUDGE_API_KEY) stays home."""
    monkeypatch.setattr(stack.services.settings, "judge_api_key", "sk-server-secret-pairwise")
    _, key = stack.create_key()
    _, runs = record_runs(stack, key, items=2)
    r = stack.client.post("/api/v1/leaderboards/pairwise", headers=stack.headers(key), json={
        "experiment_ids": [runs["strong"], runs["weak"]],
        "judge": {"provider": "openai", "model": "judge-model", "base_url": judge_server.openai_base_url}})
    assert r.status_code == 200, r.text
    assert judge_server.requests
    assert not [h for h in (r.headers for r in judge_server.requests) if any("sk-server-secret" in v for v in h.values())]


def judge_until_complete(stack, h, body) -> dict:
    """Sends the request again while the judge rate limit / time budget ends it early."""
    for _ in range(10):
        r = stack.client.post("/api/v1/leaderboards/pairwise", headers=h, json=body)
        assert r.status_code == 200, r.text
        if r.json()["complete"]:
            return r.json()
        assert r.json()["stopped"]["reason"] in ("rate_limited", "time_budget"), r.json()
    raise AssertionError("the pairwise request never completed")


def stored_verdicts(stack, project_id: str) -> int:
    with psycopg.connect(stack.postgres_url) as conn:
        return conn.execute("SELECT count(*) FROM pairwise_verdicts WHERE project_id = %s", (project_id,)).fetchone()[0]


def test_each_verdict_is_stored_before_the_next_item_and_only_items_still_to_judge_count_against_the_cap(
        stack, judge_server, monkeypatch):
    from evaluators.routers import leaderboards

    project_id, key = stack.create_key()
    h = stack.headers(key)
    _, runs = record_runs(stack, key, items=4)
    stored_when_asked: list[int] = []

    def watching_judge(body: dict) -> str:  # what PostgreSQL holds when each judge call arrives
        stored_when_asked.append(stored_verdicts(stack, project_id))
        return biased_judge(body)

    judge_server.responder = watching_judge
    monkeypatch.setattr(leaderboards, "MAX_JUDGE_CALLS", 4)
    judge = {"model": "judge-1", "base_url": judge_server.openai_base_url}
    pair = [runs["strong"], runs["weak"]]
    first = judge_until_complete(stack, h, {"experiment_ids": pair, "judge": judge, "limit": 2})
    assert first["calls"] == 4
    # item 1's verdict is saved before item 2 is asked: a cut-short request keeps what it paid for
    assert stored_when_asked == [0, 0, 1, 1]

    # 8 calls for limit 4 in all, but 4 are done: the 4 still to make fit the cap
    second = judge_until_complete(stack, h, {"experiment_ids": pair, "judge": judge, "limit": 4})
    assert second["calls"] == 4 and second["pairs"][0]["judged_now"] == 2 and second["pairs"][0]["verdicts"] == 4
    assert stored_when_asked[4:] == [2, 2, 3, 3]

    # the cap still holds for what is left: two new pairs of 4 items = 16 calls
    r = stack.client.post("/api/v1/leaderboards/pairwise", headers=h, json={
        "experiment_ids": [*pair, runs["mid"]], "judge": judge, "limit": 4})
    assert r.status_code == 400 and r.json()["error"].startswith("limit: 16 judge calls still to make")
    assert len(judge_server.requests) == 8


def test_a_request_stops_at_its_time_budget_between_items_and_asking_again_continues(stack, judge_server, monkeypatch):
    from evaluators.routers import leaderboards

    project_id, key = stack.create_key()
    h = stack.headers(key)
    _, runs = record_runs(stack, key, items=4)
    judge_server.delay_s = 0.4  # an item (two calls) takes 0.8 s: the 1 s budget ends the request after 1 or 2 items
    monkeypatch.setattr(leaderboards, "TIME_BUDGET_S", 1.0)
    body = {"experiment_ids": [runs["strong"], runs["weak"]], "judge": {"model": "judge-1", "base_url": judge_server.openai_base_url}}
    r = stack.client.post("/api/v1/leaderboards/pairwise", headers=h, json=body)
    assert r.status_code == 200, r.text
    cut = r.json()
    assert cut["stopped"] == {"reason": "time_budget", "retry_after": None} and not cut["complete"]
    judged = cut["pairs"][0]["judged_now"]
    assert 1 <= judged < 4 and cut["calls"] == 2 * judged == len(judge_server.requests)
    assert stored_verdicts(stack, project_id) == judged

    monkeypatch.setattr(leaderboards, "TIME_BUDGET_S", 60.0)
    rest = judge_until_complete(stack, h, body)
    assert rest["pairs"][0]["judged_now"] == 4 - judged and rest["pairs"][0]["verdicts"] == 4
    assert len(judge_server.requests) == 8 and stored_verdicts(stack, project_id) == 4


def test_the_leaderboard_rates_with_one_judge_and_falls_back_to_scores_for_pairs_it_did_not_judge(stack, judge_server):
    project_id, key = stack.create_key()
    h = stack.headers(key)
    items = 3
    dataset_id, runs = record_runs(stack, key, items=items)
    name_of = {v: k for k, v in runs.items()}

    def judge(model: str, *agents: str) -> str:
        body = {"experiment_ids": [runs[a] for a in agents], "judge": {"model": model, "base_url": judge_server.openai_base_url}}
        return judge_until_complete(stack, h, body)["judge"]

    older = judge("judge-1", "strong", "weak")
    newer = judge("judge-2", "strong", "mid")
    judge("judge-2", "strong", "weak")  # strong vs weak now has verdicts of both judges

    with psycopg.connect(stack.postgres_url) as conn:
        stored = conn.execute("SELECT judge, experiment_a, experiment_b, winner FROM pairwise_verdicts "
                              "WHERE project_id = %s", (project_id,)).fetchall()
    outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}

    def score_outcomes(x: str, y: str) -> list[tuple[str, str, float]]:  # exact_match per item, from AGENTS
        def one(i: int) -> float:
            ax, ay = AGENTS[x](i), AGENTS[y](i)
            return 1.0 if ax > ay else 0.0 if ax < ay else 0.5
        return [(x, y, one(i)) for i in range(items)]

    def expect(board: dict, by: str, judged: set[frozenset]) -> None:
        assert board["bradley_terry_judge"] == by and board["judges"] == [newer, older]
        assert board["bradley_terry_source"] == "judge+scores"
        comparisons = [(name_of[a], name_of[b], outcome[w]) for j, a, b, w in stored if j == by]
        for x, y in (("strong", "mid"), ("strong", "weak"), ("mid", "weak")):
            if frozenset((x, y)) not in judged:
                comparisons += score_outcomes(x, y)
        sources = {(p["entry_a"], p["entry_b"]): (p["source"], p["comparisons"]) for p in board["bradley_terry_pairs"]}
        assert sources == {tuple(sorted((x, y))): ("judge" if frozenset((x, y)) in judged else "scores", items)
                           for x, y in (("strong", "mid"), ("strong", "weak"), ("mid", "weak"))}
        expected = zermelo(comparisons)
        assert {r["entry"] for r in board["bradley_terry"]} == set(AGENTS)  # every entry rated
        for r in board["bradley_terry"]:
            assert r["comparisons"] == 2 * items  # an item judged by two judges counts once
            assert r["theta"] == pytest.approx(expected[r["entry"]], abs=1e-4)

    def get(**params):
        return stack.client.get("/api/v1/leaderboards", headers=h, params={"dataset_id": dataset_id, **params})

    expect(get().json(), newer, {frozenset(("strong", "mid")), frozenset(("strong", "weak"))})  # default: the latest judge
    expect(get(judge=older).json(), older, {frozenset(("strong", "weak"))})
    r = get(judge="openai/nobody")
    assert r.status_code == 422 and r.json()["error"].startswith("judge: no pairwise verdicts by 'openai/nobody'")
