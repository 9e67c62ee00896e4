"""A client-side run's result upload with a NUL character in one result keeps the others and names the
bad one (PostgreSQL cannot store NUL; the request guard used to refuse the whole batch)."""

from __future__ import annotations


def test_one_result_with_a_nul_is_rejected_by_name_and_the_rest_kept(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    ds = stack.client.post("/api/v1/datasets", headers=h, json={
        "name": "nul-batch", "items": [{"input": i, "expected_output": str(i)} for i in range(3)]}).json()
    exp = stack.client.post("/api/v1/experiments", headers=h, json={"name": "nul", "dataset_id": ds["id"]}).json()
    a, b, c = (i["id"] for i in exp["items"])
    rows = [{"item_id": a, "output": "fine"},
            {"item_id": b, "output": "bad\x00output"},
            {"item_id": c, "output": "fine", "scores": [{"name": "q", "value": 1, "reason": "has \x00 inside"}]}]
    r = stack.client.post(f"/api/v1/experiments/{exp['id']}/results", headers=h, json={"results": rows})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["inserted"]) == (1, 1)
    assert [e["index"] for e in body["rejected"]] == [1, 2]
    assert body["rejected"][0]["error"].startswith("results[1].output: contains a NUL")
    assert body["rejected"][1]["error"].startswith("results[2].scores: contains a NUL")
    items = stack.client.get(f"/api/v1/experiments/{exp['id']}/items", headers=h).json()["items"]
    assert [(i["item_id"], i["output"]) for i in items] == [(a, "fine")]
    # every result bad: a 400 naming the first, nothing stored
    r = stack.client.post(f"/api/v1/experiments/{exp['id']}/results", headers=h, json={"results": rows[1:2]})
    assert r.status_code == 400 and r.json()["error"].startswith("results[0].output: contains a NUL")
    # other routes still refuse NUL before their handler runs
    r = stack.client.post(f"/api/v1/experiments/{exp['id']}/finish", headers=h, json={"error": "x\x00"})
    assert r.status_code == 400 and r.json()["error"].startswith("error: must not contain a NUL")
