"""/api/v1/ab-tests: lifecycle (start, ramp, stop, winner), what the SDK config serves at each step,
ramps that keep units in place, project scoping and bad input answered 400 naming the field."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.accounts.conftest import signed_in


def body(test_name: str, **over):
    spec = {"name": test_name, "unit": "user_id",
            "variants": [{"name": "control", "weight": 50, "model": "gpt-4o"},
                         {"name": "mini", "weight": 50, "model": "gpt-4o-mini", "config": {"temperature": 0.2}}],
            "primary_metric": {"kind": "latency"},
            "guardrails": [{"metric": "error_rate", "max_relative_change": 0.1}],
            "design": {"type": "fixed", "mde": 50}}
    spec.update(over)
    return spec


@pytest.fixture
def project(stack):
    project_id, key = stack.create_key()
    h = stack.headers(key)

    class P:
        id = project_id
        headers = h

        def post(self, path, json=None):
            return stack.client.post(f"/api/v1/ab-tests{path}", headers=h, json=json)

        def get(self, path, **kw):
            return stack.client.get(f"/api/v1/ab-tests{path}", headers=h, **kw)
    return P()


def ok(resp, status=200):
    assert resp.status_code == status, resp.text
    return resp.json()


def assignments(project, test_id, units):
    return {u: ok(project.get(f"/{test_id}/assignment", params={"unit_id": u}))["variant"] for u in units}


def test_lifecycle_and_what_the_sdk_is_served(project):
    test = ok(project.post("", body("checkout")), 201)
    assert test["status"] == "draft" and [v["traffic"] for v in test["variants"]] == [0.5, 0.5]
    assert test["primary_metric"]["direction"] == "decrease"  # latency: lower is better by default
    assert ok(project.get("/sdk-config"))["tests"] == {}  # drafts are not served
    tid = test["id"]
    assert ok(project.post(f"/{tid}/start"))["status"] == "running"
    served = ok(project.get("/sdk-config"))["tests"]["checkout"]
    assert served["tag"] is True and served["segments"] == [[0, 500_000, 0], [500_000, 1_000_000, 1]]
    assert served["variants"][1] == {"name": "mini", "model": "gpt-4o-mini", "config": {"temperature": 0.2}}
    assert project.post(f"/{tid}/start").status_code == 409  # already running
    stopped = ok(project.post(f"/{tid}/stop"))
    assert stopped["status"] == "stopped" and [v["traffic"] for v in stopped["variants"]] == [1, 0]
    served = ok(project.get("/sdk-config"))["tests"]["checkout"]
    assert served["segments"] == [[0, 1_000_000, 0]] and served["tag"] is False  # everyone gets the control
    assert project.post(f"/{tid}/ramp", {"weights": {"mini": 10}}).status_code == 409
    done = ok(project.post(f"/{tid}/winner", {"variant": "mini"}))
    assert done["status"] == "completed" and done["winner"] == "mini"
    assert [e["action"] for e in done["history"]] == ["create", "start", "stop", "winner"]
    assert ok(project.get("/sdk-config"))["tests"]["checkout"]["segments"] == [[0, 1_000_000, 1]]
    assert project.post(f"/{tid}/winner", {"variant": "control"}).status_code == 409
    assert [t["name"] for t in ok(project.get("", params={"status": "completed"}))["tests"]] == ["checkout"]


def test_ramp_moves_only_the_units_it_must(project):
    tid = ok(project.post("", body("ramp-me", start=True)), 201)["id"]
    units = [f"user-{i}" for i in range(1500)]
    before = assignments(project, tid, units)
    ramped = ok(project.post(f"/{tid}/ramp", {"weights": {"control": 80, "mini": 20}}))
    assert [v["traffic"] for v in ramped["variants"]] == [0.8, 0.2]
    assert ramped["history"][-1]["moved_share"] == pytest.approx(0.3)
    after = assignments(project, tid, units)
    moved = [u for u in units if before[u] != after[u]]
    assert all(before[u] == "mini" and after[u] == "control" for u in moved)  # only out of the shrinking arm
    assert 0.22 < len(moved) / len(units) < 0.38  # ~30 % of units
    back = ok(project.post(f"/{tid}/ramp", {"weights": {"control": 50, "mini": 50}}))
    assert back["history"][-1]["moved_share"] == pytest.approx(0.3)
    assert assignments(project, tid, units) == before  # ramping back restores every unit's variant


def test_project_scoping(stack, project):
    tid = ok(project.post("", body("private", start=True)), 201)["id"]
    _, other_key = stack.create_key()
    other = stack.headers(other_key)
    for path in (f"/{tid}", f"/{tid}/results", f"/{tid}/assignment?unit_id=u"):
        assert stack.client.get(f"/api/v1/ab-tests{path}", headers=other).status_code == 404
    for path, payload in ((f"/{tid}/stop", None), (f"/{tid}/ramp", {"weights": {"mini": 1}}),
                          (f"/{tid}/winner", {"variant": "mini"})):
        assert stack.client.post(f"/api/v1/ab-tests{path}", headers=other, json=payload).status_code == 404
    assert stack.client.get("/api/v1/ab-tests", headers=other).json()["tests"] == []
    assert stack.client.get("/api/v1/ab-tests/sdk-config", headers=other).json()["tests"] == {}
    assert ok(project.get(f"/{tid}"))["status"] == "running"  # untouched by the other project's calls
    # the same name may exist in another project
    assert stack.client.post("/api/v1/ab-tests", headers=other, json=body("private")).status_code == 201


def test_viewers_read_but_cannot_create_or_change_a_test(stack, project):
    tid = ok(project.post("", body("watched", start=True)), 201)["id"]
    stack.client.cookies.clear()
    try:
        _, h = signed_in(stack.client, stack, "viewer", project.id)
        assert stack.client.get(f"/api/v1/ab-tests/{tid}", headers=h).status_code == 200
        assert stack.client.get(f"/api/v1/ab-tests/{tid}/results", headers=h).status_code == 200
        assert stack.client.post("/api/v1/ab-tests", headers=h, json=body("viewer-made")).status_code == 403
        for path, payload in (("/stop", None), ("/ramp", {"weights": {"mini": 1}}), ("/winner", {"variant": "mini"})):
            assert stack.client.post(f"/api/v1/ab-tests/{tid}{path}", headers=h, json=payload).status_code == 403
    finally:
        stack.client.cookies.clear()
    assert ok(project.get(f"/{tid}"))["status"] == "running"


def test_ingest_key_reads_only_the_sdk_config(stack, project):
    ok(project.post("", body("flag", start=True)), 201)
    ingest_key = ok(stack.client.post("/api/v1/api-keys", headers=project.headers, json={"scope": "ingest"}), 201)["key"]
    assert "flag" in stack.client.get("/api/v1/ab-tests/sdk-config", headers=stack.headers(ingest_key)).json()["tests"]
    assert stack.client.get("/api/v1/ab-tests", headers=stack.headers(ingest_key)).status_code == 403


@pytest.mark.parametrize("change, field", [
    ({"variants": [{"name": "only", "weight": 1}]}, "variants"),
    ({"variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]}, "variants"),
    ({"variants": [{"name": "a", "weight": -1}, {"name": "b", "weight": 1}]}, "variants.0.weight"),
    ({"variants": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}, "variants"),
    ({"variants": [{"name": "a", "weight": 1, "prompt": {"name": "p"}}, {"name": "b", "weight": 1}]}, "variants.0.prompt"),
    ({"primary_metric": {"kind": "score"}}, "primary_metric"),
    ({"primary_metric": {"kind": "happiness"}}, "primary_metric.kind"),
    ({"guardrails": [{"metric": "cost"}]}, "guardrails.0"),
    ({"design": {"type": "fixed"}}, "design.mde"),
    ({"design": {"type": "bayesian", "mde": 1}}, "design.type"),
    ({"design": {"mde": 1, "alpha": 0.7}}, "design.alpha"),
    ({"name": "has space"}, "name"),
    ({"primary_metric": {"kind": "error_rate"}, "design": {"mde": 1.5}}, "design.mde"),
    ({"primary_metric": {"kind": "error_rate"}, "design": {"mde": 0.5, "baseline_rate": 0.5}}, "design.mde"),
    ({"variants": [{"name": "a", "weight": 1, "config": {"big": "x" * 20_000}}, {"name": "b", "weight": 1}]},
     "variants.0.config"),
])
def test_bad_input_is_400_naming_the_field(project, change, field):
    resp = project.post("", body("bad", **change))
    assert resp.status_code == 400, resp.text
    assert field in resp.text


def test_a_nan_in_a_variant_config_is_400_naming_it(stack, project):
    spec = body("nan-config", variants=[{"name": "a", "weight": 1, "config": {"t": float("nan")}},
                                        {"name": "b", "weight": 1}])
    resp = stack.client.post("/api/v1/ab-tests", headers={**project.headers, "content-type": "application/json"},
                             content=json.dumps(spec))  # json.dumps writes NaN, which Python's parser accepts
    assert resp.status_code == 400, resp.text
    assert "variants.0.config" in resp.text


def test_an_error_rate_mde_below_1_with_room_around_the_baseline_is_accepted(project):
    ok(project.post("", body("rate-ok", primary_metric={"kind": "error_rate"},
                             design={"mde": 0.2, "baseline_rate": 0.9})), 201)


def test_concurrent_creates_of_one_name_give_one_test_and_409s(project):
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: project.post("", body("racy")).status_code, range(8)))
    assert codes == [201] + [409] * 7
    assert [t["name"] for t in ok(project.get(""))["tests"]].count("racy") == 1


def test_bad_lifecycle_requests(project):
    tid = ok(project.post("", body("lifecycle")), 201)["id"]
    assert project.post(f"/{tid}/ramp", {"weights": {"nope": 1}}).status_code == 400
    assert "weights.nope" in project.post(f"/{tid}/ramp", {"weights": {"nope": 1}}).text
    assert project.post(f"/{tid}/ramp", {"weights": {"control": 0, "mini": 0}}).status_code == 400
    assert project.post(f"/{tid}/ramp", {"weights": {"control": -3}}).status_code == 400
    assert project.post(f"/{tid}/winner", {"variant": "mini"}).status_code == 409  # a draft has no winner
    assert project.post(f"/{tid}/stop").status_code == 409
    assert project.post("", body("lifecycle")).status_code == 409  # name taken
    assert project.get("/nope").status_code == 404
    ok(project.post(f"/{tid}/start"))
    resp = project.post(f"/{tid}/winner", {"variant": "ghost"})
    assert resp.status_code == 400 and "variant" in resp.text


def prompt_versions(stack, project, name, labels_per_version):
    for labels in labels_per_version:
        resp = stack.client.post("/api/v1/prompts", headers=project.headers,
                                 json={"name": name, "prompt": f"Hello {{{{user}}}} v{len(labels)}", "labels": labels})
        assert resp.status_code == 201, resp.text


def production_version(stack, project, name):
    resp = stack.client.get(f"/api/v1/prompts/{name}", headers=project.headers, params={"label": "production"})
    assert resp.status_code == 200, resp.text
    return resp.json()["version"]


def prompt_test(project, name, variants):
    return ok(project.post("", body(name, start=True, variants=variants)), 201)["id"]


def test_declaring_a_winner_moves_the_prompt_label(stack, project):
    prompt_versions(stack, project, "greeting", [["production"], [], ["candidate"]])  # versions 1, 2, 3
    assert production_version(stack, project, "greeting") == 1
    tid = prompt_test(project, "prompt-ab", [
        {"name": "current", "weight": 1, "prompt": {"name": "greeting", "label": "production"}},
        {"name": "new", "weight": 1, "prompt": {"name": "greeting", "label": "candidate"}}])
    done = ok(project.post(f"/{tid}/winner", {"variant": "new", "label": "production"}))
    assert done["winner"] == "new"
    assert done["winner_detail"]["label_moved"] == {"prompt": "greeting", "label": "production", "version": 3}
    assert production_version(stack, project, "greeting") == 3
    # by version number
    tid = prompt_test(project, "prompt-ab-2", [
        {"name": "a", "weight": 1, "prompt": {"name": "greeting", "version": 2}},
        {"name": "b", "weight": 1, "prompt": {"name": "greeting", "version": 3}}])
    ok(project.post(f"/{tid}/winner", {"variant": "a", "label": "production"}))
    assert production_version(stack, project, "greeting") == 2


def test_a_label_that_cannot_move_leaves_the_test_running(stack, project):
    prompt_versions(stack, project, "farewell", [["production"]])
    tid = prompt_test(project, "bad-prompt-ab", [
        {"name": "plain", "weight": 1},
        {"name": "missing", "weight": 1, "prompt": {"name": "farewell", "version": 9}}])
    for variant, label in (("plain", "production"), ("missing", "production"), ("missing", "Not A Label!")):
        resp = project.post(f"/{tid}/winner", {"variant": variant, "label": label})
        assert resp.status_code == 400 and "label" in resp.text, resp.text
    assert ok(project.get(f"/{tid}"))["status"] == "running"  # nothing recorded
    assert production_version(stack, project, "farewell") == 1
