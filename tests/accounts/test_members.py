"""A project's members and invitations on the real app: who may change roles, the last owner, the
invitation link from creation to a signed-in new member."""

from __future__ import annotations

import uuid

import psycopg

from core.accounts import sha256

from .conftest import login, make_user, signed_in


def _members(client, headers) -> dict[str, str]:
    r = client.get("/api/v1/members", headers=headers)
    assert r.status_code == 200, r.text
    return {m["email"]: m["role"] for m in r.json()}


def test_admin_changes_roles_and_removes_members_but_not_owners(client, stack):
    project_id, _ = stack.create_key()
    owner, owner_pw = make_user(stack, "owner", project_id)
    viewer, viewer_pw = make_user(stack, "viewer", project_id)
    _, headers = signed_in(client, stack, "admin", project_id)
    assert _members(client, headers)[viewer.email] == "viewer"

    promoted = client.patch(f"/api/v1/members/{viewer.id}", headers=headers, json={"role": "member"})
    assert promoted.status_code == 200, promoted.text
    assert _members(client, headers)[viewer.email] == "member"
    assert client.patch(f"/api/v1/members/{viewer.id}", headers=headers, json={"role": "boss"}).json()["error"].startswith("role")
    # an admin may neither make an owner nor touch one
    assert client.patch(f"/api/v1/members/{viewer.id}", headers=headers, json={"role": "owner"}).status_code == 403
    assert client.patch(f"/api/v1/members/{owner.id}", headers=headers, json={"role": "viewer"}).status_code == 403
    assert client.delete(f"/api/v1/members/{owner.id}", headers=headers).status_code == 403
    assert client.patch(f"/api/v1/members/{uuid.uuid4().hex}", headers=headers, json={"role": "viewer"}).status_code == 404

    # the change takes effect on the member's next request (the role cache is dropped)
    client.cookies.clear()
    r = login(client, viewer, viewer_pw)
    member_headers = {"X-EvalForge-Project": project_id, "X-CSRF-Token": r.json()["csrf_token"]}
    rule = client.post("/api/v1/eval-rules", headers=member_headers, json={"name": "j", "evaluator": "json_valid"})
    assert rule.status_code == 201, rule.text
    # a member cannot change roles or remove others
    assert client.patch(f"/api/v1/members/{owner.id}", headers=member_headers, json={"role": "viewer"}).status_code == 403
    assert client.delete(f"/api/v1/members/{owner.id}", headers=member_headers).status_code == 403

    client.cookies.clear()
    login(client, owner, owner_pw)
    owner_headers = {"X-EvalForge-Project": project_id, "X-CSRF-Token": client.cookies["ef_csrf"]}
    removed = client.delete(f"/api/v1/members/{viewer.id}", headers=owner_headers)
    assert removed.status_code == 200, removed.text
    assert viewer.email not in _members(client, owner_headers)
    # the removed user now finds no such project
    client.cookies.clear()
    login(client, viewer, viewer_pw)
    assert client.get("/api/v1/traces", headers={"X-EvalForge-Project": project_id}).status_code == 404


def test_the_last_owner_stays(client, stack):
    project_id, headers = signed_in(client, stack, "owner")
    me = client.get("/api/v1/auth/me").json()["user"]["id"]
    demote = client.patch(f"/api/v1/members/{me}", headers=headers, json={"role": "admin"})
    assert demote.status_code == 409 and "owner" in demote.json()["error"]
    assert client.delete(f"/api/v1/members/{me}", headers=headers).status_code == 409
    # with a second owner, the first may step down
    other, _ = make_user(stack, "viewer", project_id)
    assert client.patch(f"/api/v1/members/{other.id}", headers=headers, json={"role": "owner"}).status_code == 200
    assert client.patch(f"/api/v1/members/{me}", headers=headers, json={"role": "admin"}).status_code == 200


def test_anyone_may_leave(client, stack):
    project_id, headers = signed_in(client, stack, "viewer")
    me = client.get("/api/v1/auth/me").json()["user"]["id"]
    assert client.delete(f"/api/v1/members/{me}", headers=headers).status_code == 200
    assert client.get("/api/v1/projects").json() == []


def test_invitation_makes_a_new_user_a_member_and_signs_them_in(client, stack):
    project_id, headers = signed_in(client, stack, "admin")
    email = f"New.Person-{uuid.uuid4().hex[:6]}@Example.com"
    made = client.post("/api/v1/invitations", headers=headers, json={"email": email, "role": "viewer"})
    assert made.status_code == 201, made.text
    invite = made.json()
    assert invite["url"] == f"http://testserver/invite?token={invite['token']}" and invite["email"] == email.lower()
    listed = client.get("/api/v1/invitations", headers=headers).json()
    assert [(i["email"], i["status"]) for i in listed] == [(email.lower(), "pending")]
    assert "token" not in listed[0]
    with psycopg.connect(stack.postgres_url) as conn:  # only the token's hash is kept
        stored = conn.execute("SELECT token_hash FROM invitations WHERE id = %s", (invite["id"],)).fetchone()[0]
    assert stored == sha256(invite["token"]) and invite["token"] not in stored
    # an admin may not invite an owner
    assert client.post("/api/v1/invitations", headers=headers, json={"email": "o@x.io", "role": "owner"}).status_code == 403
    assert client.post("/api/v1/invitations", headers=headers, json={"email": "nope"}).json()["error"].startswith("email")

    client.cookies.clear()
    short = client.post("/api/v1/auth/accept-invite", json={"token": invite["token"], "password": "short"})
    assert short.status_code == 400 and short.json()["error"].startswith("password")
    accepted = client.post("/api/v1/auth/accept-invite",
                           json={"token": invite["token"], "password": "a new password", "name": "New Person"})
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["user"]["email"] == email.lower() and body["user"]["name"] == "New Person"
    assert [(p["id"], p["role"]) for p in body["projects"]] == [(project_id, "viewer")]
    assert client.get("/api/v1/traces", headers={"X-EvalForge-Project": project_id}).status_code == 200
    # used once only; the new account signs in with its password
    again = client.post("/api/v1/auth/accept-invite", json={"token": invite["token"], "password": "a new password"})
    assert again.status_code == 400 and again.json()["error"].startswith("token")
    client.cookies.clear()
    assert client.post("/api/v1/auth/login", json={"email": email, "password": "a new password"}).status_code == 200


def test_invitation_for_an_existing_user_needs_their_password(client, stack):
    project_id, headers = signed_in(client, stack, "owner")
    existing, password = make_user(stack)
    token = client.post("/api/v1/invitations", headers=headers, json={"email": existing.email, "role": "admin"}).json()["token"]
    revoked = client.post("/api/v1/invitations", headers=headers, json={"email": "r@example.com"}).json()
    assert client.delete(f"/api/v1/invitations/{revoked['id']}", headers=headers).status_code == 200
    client.cookies.clear()
    assert client.post("/api/v1/auth/accept-invite", json={"token": revoked["token"], "password": "whatever1"}).status_code == 400
    wrong = client.post("/api/v1/auth/accept-invite", json={"token": token, "password": "not theirs!"})
    assert wrong.status_code == 401
    ok = client.post("/api/v1/auth/accept-invite", json={"token": token, "password": password})
    assert ok.status_code == 200, ok.text
    assert {p["id"]: p["role"] for p in ok.json()["projects"]} == {project_id: "admin"}
    # the existing password was kept
    client.cookies.clear()
    assert login(client, existing, password).status_code == 200


def test_viewer_cannot_invite_and_members_of_another_project_are_hidden(client, stack):
    _, headers = signed_in(client, stack, "viewer")
    project_b, _ = stack.create_key()
    make_user(stack, "owner", project_b)
    assert client.post("/api/v1/invitations", headers=headers, json={"email": "x@example.com"}).status_code == 403
    assert client.get("/api/v1/invitations", headers=headers).status_code == 403
    assert client.get("/api/v1/members", headers={"X-EvalForge-Project": project_b}).status_code == 404
    me = client.get("/api/v1/auth/me").json()["user"]["email"]
    assert _members(client, headers) == {me: "viewer"}
