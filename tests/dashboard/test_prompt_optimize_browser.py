"""The Prompts page's Optimise tab in Chromium: a finished optimisation (seeded through the optimiser's own
store, decision and holdout test, with its two holdout runs recorded as real experiments) is shown with
the numbers GET .../optimize/{job_id} gives; a member promotes the new version to a label; a refused start
names its field inline; a viewer sees no start or promote control.

A live job cannot run here: the live stack's egress guard refuses the loopback fake LLM server (see
test_prompts_browser's playground test), and tests/evaluators/test_optimize_api.py runs real jobs."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass

import psycopg
import pytest

from evaluators.optimizer import store
from evaluators.optimizer.search import ALPHA, Limits, decide, holdout_test
from evaluators.routers.optimize import OptimizeIn, job_spec
from tests.dashboard.test_experiment_pages import _js_cost, _js_precision4, _record_run
from tests.dashboard.test_prompts_browser import _signed_in

pytestmark = pytest.mark.timeout(240)
N_HOLDOUT = 20
BASE_PROMPT = "Multiply {{a}} by {{b}}."
WINNER = "Multiply {{a}} by {{b}}. Reply with the number only."


def baseline_right(i: int) -> bool:
    return i % 2 == 0  # 10 of 20


def candidate_right(i: int) -> bool:
    return i != 3  # 19 of 20: every baseline pass kept, 9 gained -> one-sided McNemar p = 0.5 ** 9


@dataclass
class Seeded:
    job_id: str
    rejected_job_id: str
    baseline_exp: str
    candidate_exp: str
    dataset_id: str


def _in_thread(coro_fn):
    """Run an async store call off Playwright's thread (its sync API holds this thread's event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()


def _seed_job(live, project_id: str, dataset_id: str, base: dict, cand: dict, history: list[dict],
              experiments: tuple[str, str] | None, result_version: int | None) -> str:
    """A completed job as the optimiser leaves it: the stored request, progress and history, the holdout
    test and decision computed by the optimiser's own functions, the experiments linked."""
    request = OptimizeIn.model_validate({
        "dataset_id": dataset_id, "evaluators": [{"evaluator": "exact_match"}], "target": {"model": "target-model"},
        "budget": {"max_calls": 400, "max_usd": 2.0}, "rounds": 1, "candidates_per_round": 2})
    test = holdout_test(base, cand)
    summary = {"cost": {"per_item": 0.0002}, "latency_ms": {"p95": 180.0}}
    verdict = decide(test, summary, summary, Limits())
    decision = {"objective": "exact_match", "best_candidate": "r1c2", "stopped_early": None,
                "dev": {"baseline": history[0]["dev"]["mean"], "best": history[-1]["dev"]["mean"]},
                **verdict, "test": test,
                "holdout": {"items": len(base),
                            "baseline": {"experiment_id": experiments[0] if experiments else None, "mean": test["mean_base"],
                                         "cost_per_item": 0.0002, "latency_p95_ms": 180.0},
                            "candidate": {"experiment_id": experiments[1] if experiments else None, "mean": test["mean_other"],
                                          "cost_per_item": 0.0002, "latency_p95_ms": 180.0}}}
    progress = {"round": 1, "rounds": 1, "stage": "done", "calls": 137, "usd": 0.01234, "max_calls": 400,
                "max_usd": 2.0, "objective": "exact_match", "best": "r1c2", "round_log": [{"round": 1, "proposed": 2}]}

    async def work():
        async with await psycopg.AsyncConnection.connect(live.postgres_url, autocommit=True) as conn:
            job_id = await store.create(conn, project_id, "tutor", 1, dataset_id, 1, job_spec(request, 1))
            await conn.execute("UPDATE prompt_optimizations SET status = 'running', started_at = now() WHERE id = %s",
                               (job_id,))
            await store.save_progress(conn, job_id, progress, history, {})
            if experiments:
                await store.link_experiments(conn, job_id, *experiments)
            assert await store.finish(conn, job_id, "completed", decision=decision, result_version=result_version)
            return job_id

    return _in_thread(work)


def _history(best_mean: float) -> list[dict]:
    return [
        {"id": "baseline", "round": 0, "prompt": BASE_PROMPT, "rationale": "", "status": "baseline",
         "dev": {"n": 12, "mean": 0.5}, "race": []},
        {"id": "r1c1", "round": 1, "prompt": "Be kind. " + BASE_PROMPT, "rationale": "kindness", "status": "eliminated",
         "dev": {"n": 6, "mean": 1 / 3}, "race": [{"items": 6, "mean": 1 / 3}]},
        {"id": "r1c2", "round": 1, "prompt": WINNER, "rationale": "ask for the number", "status": "best",
         "dev": {"n": 12, "mean": best_mean}, "race": [{"items": 6, "mean": 5 / 6}, {"items": 12, "mean": best_mean}]},
    ]


@pytest.fixture(scope="module")
def seeded_member(browser, live):
    """A member signed in, the prompt (v1 production, v2 the optimiser's unlabelled version), and jobs."""
    ctx, page, project_id, key, _ = _signed_in(browser, live, "member")
    items = [{"input": {"a": i + 2, "b": 3}, "expected_output": str(3 * (i + 2))} for i in range(N_HOLDOUT)]
    with live.api(key) as api:
        r = api.post("/api/v1/datasets", json={"name": "products", "items": items})
        assert r.status_code == 201, r.text
        dataset_id = r.json()["id"]
        exps = (_record_run(api, dataset_id, "optimize tutor holdout: baseline", "baseline", items, baseline_right, {}),
                _record_run(api, dataset_id, "optimize tutor holdout: candidate (r1c2)", "candidate", items, candidate_right, {}))
        for body in ({"name": "tutor", "prompt": BASE_PROMPT, "labels": ["production"]},
                     {"name": "tutor", "prompt": WINNER, "message": "prompt optimisation"}):
            assert api.post("/api/v1/prompts", json=body).status_code == 201
    base = {i: (1.0 if baseline_right(i) else 0.0, baseline_right(i)) for i in range(N_HOLDOUT)}
    cand = {i: (1.0 if candidate_right(i) else 0.0, candidate_right(i)) for i in range(N_HOLDOUT)}
    job_id = _seed_job(live, project_id, dataset_id, base, cand, _history(11 / 12), exps, 2)
    # a second one, no better on the holdout: rejected, no version
    same = {i: (1.0 if i % 2 else 0.0, bool(i % 2)) for i in range(N_HOLDOUT)}
    rejected = _seed_job(live, project_id, dataset_id, base, same, _history(7 / 12), None, None)
    yield ctx, page, project_id, key, Seeded(job_id, rejected, *exps, dataset_id)
    ctx.close()


def test_job_view_shows_the_apis_numbers_and_promote_moves_the_label(live, seeded_member):
    _, page, project_id, key, s = seeded_member
    with live.api(key) as api:
        job = api.get(f"/api/v1/prompts/tutor/optimize/{s.job_id}").json()
        assert api.get("/api/v1/prompts/tutor", params={"label": "production"}).json()["version"] == 1
    page.goto(f"/projects/{project_id}/prompts?prompt=tutor")
    page.get_by_role("tab", name="Optimise").click()
    jobs = page.get_by_role("table", name="Optimisations")
    row = jobs.locator(f"tr[data-job-id='{s.job_id}']")
    row.wait_for()
    cells = row.get_by_role("cell")
    assert [cells.nth(i).inner_text() for i in (1, 2, 3, 4, 5)] == [
        "completed", "1 / 1", str(job["progress"]["calls"]), _js_cost(job["progress"]["usd"]), "v2"]
    assert jobs.locator(f"tr[data-job-id='{s.rejected_job_id}']").get_by_role("cell").nth(5).inner_text() == "no new version"
    row.get_by_role("button").click()
    assert "tab=optimise" in page.url and f"job={s.job_id}" in page.url  # the view is a link

    view = page.get_by_role("region", name="Optimisation job")
    assert view.get_by_test_id("job-status").inner_text() == "completed"
    assert view.get_by_test_id("job-calls").inner_text() == f"{job['progress']['calls']} / {job['progress']['max_calls']}"
    assert view.get_by_test_id("job-usd").inner_text() == f"{_js_cost(job['progress']['usd'])} / $2.0000"
    candidates = view.get_by_role("table", name="Candidates")
    for cand in job["history"]:
        cells = candidates.locator(f"tr[data-candidate='{cand['id']}']").get_by_role("cell")
        assert cells.nth(2).inner_text() == cand["status"]
        assert cells.nth(3).inner_text() == f"{cand['dev']['mean']:.3f}" and cells.nth(4).inner_text() == str(cand["dev"]["n"])
        assert cells.nth(5).inner_text() == (" → ".join(f"{r['items']}: {r['mean']:.3f}" for r in cand["race"]) or "–")

    d, t = job["decision"], job["decision"]["test"]
    decision = view.get_by_role("region", name="Decision")
    assert decision.get_by_role("heading").inner_text() == "Decision: accepted" and d["accepted"] is True
    assert t["test"] == "mcnemar_exact" and t["p_value"] == pytest.approx(0.5 ** 9)
    assert decision.get_by_test_id("test-name").inner_text().startswith(t["test"])
    assert decision.get_by_test_id("test-p").inner_text() == _js_precision4(t["p_value"])
    assert decision.get_by_test_id("mean-baseline").inner_text() == f"{t['mean_base']:.3f}" == "0.500"
    assert decision.get_by_test_id("mean-candidate").inner_text() == f"{t['mean_other']:.3f}" == "0.950"
    assert decision.get_by_test_id("significant").inner_text() == ("yes" if t["p_value"] < ALPHA else "no") == "yes"
    links = {a.inner_text(): a.get_attribute("href") for a in decision.get_by_role("link").all()}
    assert links["baseline experiment"] == f"/projects/{project_id}/experiments/{job['experiments']['baseline']}"
    assert links["candidate experiment"] == f"/projects/{project_id}/experiments/{job['experiments']['candidate']}"
    assert links["compare the two"] == (f"/projects/{project_id}/experiments/compare"
                                        f"?ids={s.baseline_exp}&ids={s.candidate_exp}")

    # a person promotes the new version; nothing moved it before
    promote = view.get_by_role("form", name="Promote to label")
    promote.get_by_label("Promote v2 to label").fill("production")
    promote.get_by_role("button", name="Promote").click()
    promote.get_by_role("status").wait_for()
    with live.api(key) as api:
        assert api.get("/api/v1/prompts/tutor", params={"label": "production"}).json()["version"] == 2
    # the compare link opens the Compare page on the two holdout runs
    decision.get_by_role("link", name="compare the two").click()
    page.wait_for_url("**/experiments/compare?**")
    page.get_by_role("heading", name="Metrics against the baseline, optimize tutor holdout: baseline").wait_for()
    metric = page.locator(f"[data-testid=metric-row][data-experiment='{s.candidate_exp}'][data-metric=exact_match]")
    assert metric.get_by_role("cell").nth(0).inner_text() == "optimize tutor holdout: candidate (r1c2)"


def test_a_rejected_job_says_why(live, seeded_member):
    _, page, project_id, key, s = seeded_member
    with live.api(key) as api:
        d = api.get(f"/api/v1/prompts/tutor/optimize/{s.rejected_job_id}").json()["decision"]
    assert d["accepted"] is False and d["test"]["p_value"] >= ALPHA
    page.goto(f"/projects/{project_id}/prompts?prompt=tutor&tab=optimise&job={s.rejected_job_id}")
    decision = page.get_by_role("region", name="Decision")
    assert decision.get_by_role("heading").inner_text() == "Decision: rejected"
    assert decision.get_by_test_id("decision-reason").inner_text() == f"Why rejected: {d['reason']}"
    assert "not significant on the holdout" in d["reason"]
    assert decision.get_by_test_id("significant").inner_text() == "no"
    assert page.get_by_role("region", name="Proposed version").count() == 0


def test_a_refused_start_names_the_field_inline(live, seeded_member):
    _, page, project_id, key, _ = seeded_member
    with live.api(key) as api:
        before = len(api.get("/api/v1/prompts/tutor/optimize").json()["jobs"])
    page.goto(f"/projects/{project_id}/prompts?prompt=tutor&tab=optimise")
    form = page.get_by_role("form", name="Start optimisation")
    form.get_by_label("Dataset").select_option(label="products")
    form.get_by_label("Target model").fill("target-model")
    form.get_by_label("Base URL").fill("http://127.0.0.1:9/v1")  # the egress guard allows no loopback host
    form.get_by_role("button", name="Start optimisation").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "(400)" in alert.inner_text() and "target.base_url" in alert.inner_text()
    # an objective no evaluator produces: refused, naming objective
    form.get_by_label("Base URL").fill("")
    form.get_by_label("Objective").fill("helpfulness")
    form.get_by_role("button", name="Start optimisation").click()
    page.get_by_role("alert").filter(has_text="objective").wait_for()
    with live.api(key) as api:
        assert len(api.get("/api/v1/prompts/tutor/optimize").json()["jobs"]) == before  # nothing queued


def test_viewer_sees_jobs_but_no_start_or_promote(browser, live):
    ctx, page, project_id, key, _ = _signed_in(browser, live, "viewer")
    try:
        with live.api(key) as api:
            r = api.post("/api/v1/datasets", json={"name": "d", "items": [{"input": {"a": 1, "b": 2}, "expected_output": "2"}]})
            dataset_id = r.json()["id"]
            for body in ({"name": "tutor", "prompt": BASE_PROMPT, "labels": ["production"]}, {"name": "tutor", "prompt": WINNER}):
                assert api.post("/api/v1/prompts", json=body).status_code == 201
        base = {i: (1.0 if baseline_right(i) else 0.0, baseline_right(i)) for i in range(N_HOLDOUT)}
        cand = {i: (1.0 if candidate_right(i) else 0.0, candidate_right(i)) for i in range(N_HOLDOUT)}
        job_id = _seed_job(live, project_id, dataset_id, base, cand, _history(11 / 12), None, 2)
        page.goto(f"/projects/{project_id}/prompts?prompt=tutor&tab=optimise&job={job_id}")
        page.get_by_role("region", name="Proposed version").wait_for()
        assert page.get_by_role("table", name="Optimisations").locator(f"tr[data-job-id='{job_id}']").count() == 1
        assert page.get_by_role("form", name="Start optimisation").count() == 0
        assert page.get_by_role("form", name="Promote to label").count() == 0
    finally:
        ctx.close()


def test_a_running_job_shows_live_progress_and_a_member_cancels_it(live, seeded_member):
    """A job held by a worker (its advisory lock taken here, as ``store.claim`` does, so the live stack's
    worker neither claims nor requeues it): the view follows its progress and its Cancel stops it."""
    _, page, project_id, key, s = seeded_member
    request = OptimizeIn.model_validate({
        "dataset_id": s.dataset_id, "evaluators": [{"evaluator": "exact_match"}], "target": {"model": "target-model"},
        "budget": {"max_calls": 400, "max_usd": 2.0}, "rounds": 3, "candidates_per_round": 2})
    progress = {"round": 1, "rounds": 3, "stage": "racing", "calls": 10, "usd": 0.001, "max_calls": 400, "max_usd": 2.0,
                "best": "baseline"}
    with psycopg.connect(live.postgres_url, autocommit=True) as worker:
        job_id = _in_thread(lambda: _create_running(live, project_id, s.dataset_id, job_spec(request, 1), progress))
        assert worker.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, %s))",
                              (job_id, store._LOCK_SPACE)).fetchone()[0]
        page.goto(f"/projects/{project_id}/prompts?prompt=tutor&tab=optimise&job={job_id}")
        view = page.get_by_role("region", name="Optimisation job")
        assert view.get_by_test_id("job-status").inner_text() == "running (racing)"
        assert view.get_by_test_id("job-calls").inner_text() == "10 / 400"
        # the worker moves on: the open view follows without a reload
        _in_thread(lambda: _save(live, job_id, {**progress, "round": 2, "calls": 31, "usd": 0.004},
                                 _history(0.75)[:2]))
        view.get_by_test_id("job-calls").filter(has_text="31 / 400").wait_for()
        assert view.get_by_test_id("job-round").inner_text() == "2 / 3"
        assert view.get_by_role("table", name="Candidates").locator("tr[data-candidate='r1c1']").count() == 1
        view.get_by_role("button", name="Cancel optimisation").click()
        view.get_by_test_id("job-status").filter(has_text="cancelled").wait_for()
        assert view.get_by_role("button", name="Cancel optimisation").count() == 0
        with live.api(key) as api:
            assert api.get(f"/api/v1/prompts/tutor/optimize/{job_id}").json()["status"] == "cancelled"


async def _create_running(live, project_id: str, dataset_id: str, spec: dict, progress: dict) -> str:
    async with await psycopg.AsyncConnection.connect(live.postgres_url, autocommit=True) as conn:
        job_id = await store.create(conn, project_id, "tutor", 1, dataset_id, 1, spec)
        await conn.execute("UPDATE prompt_optimizations SET status = 'running', started_at = now() WHERE id = %s",
                           (job_id,))
        await store.save_progress(conn, job_id, progress, [], {})
        return job_id


async def _save(live, job_id: str, progress: dict, history: list[dict]) -> None:
    async with await psycopg.AsyncConnection.connect(live.postgres_url, autocommit=True) as conn:
        await store.save_progress(conn, job_id, progress, history, {})
