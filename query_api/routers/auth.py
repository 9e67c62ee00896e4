"""Sign-in for the dashboard (and any script that prefers a session): login, me, logout.

The answer of login and me is the same: the user, their projects with their role, and the CSRF
token that state-changing requests must echo in ``X-CSRF-Token``.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from core.accounts import (User, create_user, csrf_token_for, hash_password, normalize_email, redeem_invitation, set_password,
                           sha256, verify_password)
from core.deps import CSRF_COOKIE, SESSION_COOKIE, ServicesDep, SignedInUserDep, session_user
from core.services import Services

router = APIRouter(prefix="/api/v1/auth", tags=["accounts"])

WRONG_LOGIN = "wrong email or password"


class AcceptInviteIn(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    name: str = Field("", max_length=200)


class PasswordIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class LoginIn(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


def client_address(request: Request) -> str:
    # uvicorn already replaced the peer by X-Forwarded-For when the peer is a trusted proxy
    # (FORWARDED_ALLOW_IPS, default 127.0.0.1); the header itself is never read here.
    return request.client.host if request.client else "unknown"


def over_https(request: Request) -> bool:
    # X-Forwarded-Proto is honoured from anyone: it can only make the cookie stricter (Secure).
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


async def session_body(services: Services, user: User, token: str) -> dict:
    memberships = await services.sessions.memberships(user.id)  # type: ignore[union-attr]
    return {"user": {"id": user.id, "email": user.email, "name": user.name},
            "projects": [{"id": pid, "name": name, "role": role} for pid, (name, role) in memberships.items()],
            "csrf_token": csrf_token_for(token)}


def set_session_cookies(request: Request, response: Response, token: str, max_age: int) -> None:
    secure = over_https(request)
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="lax", secure=secure)
    # Readable by the page's JavaScript, which copies it into X-CSRF-Token; another site cannot read it.
    response.set_cookie(CSRF_COOKIE, csrf_token_for(token), max_age=max_age, path="/", httponly=False,
                        samesite="lax", secure=secure)


async def sign_in(request: Request, response: Response, services: Services, user: User) -> dict:
    """Start a session for ``user`` (ending the one the browser had, so a planted cookie is useless)."""
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await services.sessions.delete(old)  # type: ignore[union-attr]
    token = await services.sessions.create(user.id)  # type: ignore[union-attr]
    set_session_cookies(request, response, token, int(services.sessions.lifetime.total_seconds()))  # type: ignore[union-attr]
    return await session_body(services, user, token)


async def check_password_throttled(request: Request, services: Services, email: str, password: str) -> User:
    """The user with this email and password; 429 while throttled, 401 when wrong (and counted)."""
    throttle = services.login_throttle
    ip = client_address(request)
    wait = await throttle.retry_after(email, ip)  # type: ignore[union-attr]
    if wait:
        raise HTTPException(429, f"too many failed sign-ins: try again in {wait} s", headers={"Retry-After": str(wait)})
    async with services.pg.connection() as conn:  # type: ignore[union-attr]
        cur = await conn.execute("SELECT id, email, name, password_hash FROM users WHERE email = %s", (email,))
        row = await cur.fetchone()
    ok, rehash = await services.password_hashing.run(verify_password, row[3] if row else None, password)
    if not ok:
        await throttle.failed(email, ip)  # type: ignore[union-attr]
        raise HTTPException(401, WRONG_LOGIN)
    assert row is not None  # a match is only possible against a stored hash
    await throttle.succeeded(email)  # type: ignore[union-attr]
    if rehash:  # the library's default parameters grew since this hash was made
        new_hash = await services.password_hashing.run(hash_password, password)
        async with services.pg.connection() as conn:  # type: ignore[union-attr]
            await conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (new_hash, row[0]))
    return User(row[0], row[1], row[2])


@router.post("/login")
async def login(body: LoginIn, request: Request, response: Response, services: ServicesDep) -> dict:
    """Email + password -> session cookie ``ef_session`` (HttpOnly) and ``ef_csrf`` (for the page)."""
    try:
        email = normalize_email(body.email)
    except ValueError:
        raise HTTPException(401, WRONG_LOGIN) from None  # same answer as for an unknown address
    user = await check_password_throttled(request, services, email, body.password)
    return await sign_in(request, response, services, user)


@router.post("/accept-invite")
async def accept_invite(body: AcceptInviteIn, request: Request, response: Response, services: ServicesDep) -> dict:
    """Join the invitation's project and sign in: a new user chooses a password (and name); someone
    who already has an account signs in with theirs."""
    async with services.pg.connection() as conn:  # type: ignore[union-attr]
        cur = await conn.execute(
            "SELECT id, project_id, email, role FROM invitations WHERE token_hash = %s AND accepted_at IS NULL "
            "AND revoked_at IS NULL AND expires_at > now()", (sha256(body.token),))
        invitation = await cur.fetchone()
        if invitation is None:
            raise HTTPException(400, "token: unknown, expired, revoked or already used invitation")
        invitation_id, project_id, email, role = invitation
        cur = await conn.execute("SELECT 1 FROM users WHERE email = %s", (email,))
        has_account = await cur.fetchone() is not None
    user = await check_password_throttled(request, services, email, body.password) if has_account else None

    def redeem() -> User | None:
        with services.pg_sync() as conn, conn.transaction():
            joining = user or create_user(conn, email, body.password, body.name)
            return joining if redeem_invitation(conn, invitation_id, project_id, joining.id, role) else None

    try:
        joined = await services.password_hashing.run(redeem)  # hashes a new user's password
    except ValueError as exc:  # a password too short or long; an account made meanwhile with this email
        raise HTTPException(400, str(exc)) from None
    if joined is None:
        raise HTTPException(400, "token: unknown, expired, revoked or already used invitation")
    await services.sessions.forget_memberships(joined.id)  # type: ignore[union-attr]
    return await sign_in(request, response, services, joined)


@router.get("/me")
async def me(user: SignedInUserDep, request: Request, services: ServicesDep) -> dict:
    return await session_body(services, user, request.cookies[SESSION_COOKIE])


@router.post("/password")
async def change_password(body: PasswordIn, user: SignedInUserDep, request: Request, response: Response,
                          services: ServicesDep) -> dict:
    """A new password (the current one is asked again, throttled like sign-in); every session of the
    user ends, and this browser gets a new one."""
    try:
        await check_password_throttled(request, services, user.email, body.current_password)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise
        raise HTTPException(400, "current_password: wrong password") from None  # 401 would read as signed out
    try:
        ended = await services.password_hashing.run(_set_password, services, user.email, body.new_password)
    except ValueError as exc:
        raise HTTPException(400, str(exc).replace("password:", "new_password:", 1)) from None
    await services.sessions.forget_sessions(ended)  # type: ignore[union-attr]
    return await sign_in(request, response, services, user)


def _set_password(services: Services, email: str, password: str) -> list[str]:
    with services.pg_sync() as conn:
        return set_password(conn, email, password) or []


@router.post("/logout", status_code=204)
async def logout(request: Request, services: ServicesDep) -> Response:
    """Ends the session (in PostgreSQL and the caches) and clears both cookies."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and await services.sessions.user_for_token(token) is not None:  # type: ignore[union-attr]
        await session_user(request, services)  # the CSRF rule holds for signing out too
        await services.sessions.delete(token)  # type: ignore[union-attr]
    response = Response(status_code=204)
    secure = over_https(request)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=name == SESSION_COOKIE, samesite="lax")
    return response
