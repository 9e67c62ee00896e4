"""Alert state in Redis, shared by every processor replica (sync redis-py).

Per (rule, group) a hash holds ``state`` (ok | firing), ``episode`` (bumped on each ok -> firing),
``notified`` (the episode a firing message went out for), ``last_sent`` and ``evaluated_at``
(milliseconds). One Lua script applies a decision: it reads the hash, moves the state machine, and — in
the same atomic step — appends the message to an outbox stream. Redis runs scripts one at a time, so
however many replicas apply decisions concurrently, each transition happens once and yields one
outbox entry. ``evaluated_at`` makes the script drop decisions older than one already applied, so a
slow replica cannot flip an alert back with stale data.

The outbox is a Redis stream read through a consumer group: each entry is handed to one replica,
which delivers it and acknowledges it. Entries of a replica that died mid-delivery are reclaimed by
another after ``lease_s`` (``XAUTOCLAIM``), so a message is lost only if Redis loses it; a delivery
that outlives the lease could be sent twice, which is why the notifier's own retry budget is shorter.

Messages are sent when:
- a firing starts and no firing message for this (rule, group) went out within ``cooldown``; a firing
  that starts inside the cooldown (flapping) is announced once the cooldown has passed, if still firing;
- it is still firing after ``cooldown`` since the last message and the rule has ``renotify`` (reminder);
- a firing that was announced resolves (exactly one resolve message).
While the rule is muted the state machine runs as usual but no firing or reminder is queued, and a firing
is not marked announced: if it is still firing when the mute ends, it is announced then. A firing
announced before the mute still gets its resolve message. A firing queued before the mute but
delivered during it is dropped and marked unannounced again (``unannounce``).
Keys share one hash tag so the script's keys live in one Redis Cluster slot.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis

log = logging.getLogger(__name__)

_APPLY = """
local now = tonumber(ARGV[1])
local breach = ARGV[2] == '1'
local cooldown = tonumber(ARGV[3])
local renotify = ARGV[4] == '1'
local group = ARGV[6]
local muted = ARGV[9] == '1'
local s = redis.call('HMGET', KEYS[1], 'state', 'episode', 'notified', 'last_sent', 'evaluated_at')
local evaluated_at = tonumber(s[5])
if evaluated_at and now <= evaluated_at then return 'stale|||0' end
local firing = s[1] == 'firing'
local episode = tonumber(s[2]) or 0
local notified = tonumber(s[3]) or 0
local last_sent = tonumber(s[4])
local kind = false
local transition = ''
if breach then
  if not firing then
    firing = true
    transition = 'firing'
    episode = episode + 1
    redis.call('SADD', KEYS[2], group)
    redis.call('HSET', KEYS[1], 'started_at', now)
  end
  if last_sent == nil or now - last_sent >= cooldown then
    if notified ~= episode then kind = 'firing' elseif renotify then kind = 'reminder' end
  end
  -- muted: not marked as announced, so a firing still going when the mute ends is announced then
  if kind and not muted then notified = episode; last_sent = now end
else
  redis.call('SREM', KEYS[2], group)
  if firing then
    firing = false
    transition = 'resolved'
    if notified == episode then kind = 'resolved' end
  end
end
local suppressed = ''
-- a mute holds back pages about a problem, never the news that an announced one is over
if muted and (kind == 'firing' or kind == 'reminder') then suppressed = kind; kind = false end
redis.call('HSET', KEYS[1], 'state', firing and 'firing' or 'ok', 'episode', episode,
           'notified', notified, 'evaluated_at', now)
if last_sent then redis.call('HSET', KEYS[1], 'last_sent', last_sent) end
if firing then redis.call('PERSIST', KEYS[1]) else redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5])) end
if kind then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'kind', kind, 'rule_id', ARGV[7],
             'group', group, 'episode', episode, 'at_ms', now, 'payload', ARGV[8])
end
return (kind or 'none') .. '|' .. transition .. '|' .. suppressed .. '|' .. episode
"""

# Undo what queueing a firing message did (notified, last_sent), if the group is still in that episode:
# the message was dropped unsent (the rule was muted meanwhile), so the firing is announced after the mute.
_UNANNOUNCE = """
local s = redis.call('HMGET', KEYS[1], 'state', 'episode', 'notified', 'last_sent')
local episode = tonumber(ARGV[1])
if s[1] ~= 'firing' or tonumber(s[2]) ~= episode or tonumber(s[3]) ~= episode then return 0 end
redis.call('HSET', KEYS[1], 'notified', episode - 1)
-- it was queued only once the cooldown since any earlier message had passed: no cooldown to keep
if tonumber(s[4]) == tonumber(ARGV[2]) then redis.call('HDEL', KEYS[1], 'last_sent') end
return 1
"""

_GROUP = "senders"
_FAILED_KEPT = 100


@dataclass(frozen=True)
class Outgoing:
    """One message to deliver, as taken from the outbox."""

    entry_id: str
    kind: str  # firing | reminder | resolved
    rule_id: str
    group: str
    episode: int
    at_ms: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Applied:
    """What applying one decision did."""

    kind: str  # the message queued: firing | reminder | resolved; none; or stale (an older decision)
    transition: str  # the state change: firing (ok -> firing), resolved (firing -> ok), or ''
    suppressed: str  # the message a mute kept from being queued, or ''
    episode: int  # the group's firing episode after the decision


class AlertStateStore:
    """The shared alert state and outbox. One instance per engine (it names its outbox consumer)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "evalforge:alerts", lease_s: float = 300.0,
                 consumer: str | None = None) -> None:
        self._redis = client
        self._tag = "{" + prefix + "}"
        self._outbox = f"{self._tag}:outbox"
        self._lease_ms = int(lease_s * 1000)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._apply = client.register_script(_APPLY)
        self._unannounce = client.register_script(_UNANNOUNCE)
        self._group_ready = False

    def claim_tick(self, rule_id: str, at_ms: int, ttl_s: int) -> bool:
        """True for the one replica that gets to evaluate ``rule_id`` at ``at_ms`` (saves duplicate queries)."""
        return bool(self._redis.set(f"{self._tag}:tick:{rule_id}:{at_ms}", self.consumer, nx=True, ex=ttl_s))

    def firing_groups(self, rule_id: str) -> set[str]:
        """Groups of the rule currently firing."""
        return {_text(m) for m in self._redis.smembers(f"{self._tag}:firing:{rule_id}")}

    def evaluated_at(self, rule_id: str, groups: set[str]) -> dict[str, int]:
        """When a decision was last applied (ms) to each of these groups of the rule."""
        pipe = self._redis.pipeline(transaction=False)
        ordered = sorted(groups)
        for group in ordered:
            pipe.hget(f"{self._tag}:state:{rule_id}:{group}", "evaluated_at")
        return {g: int(v) for g, v in zip(ordered, pipe.execute(), strict=True) if v is not None}

    def apply(self, rule: Any, decisions: list[tuple[str, bool, dict[str, Any]]], now_ms: int,
              muted: bool = False) -> list[Applied]:
        """Apply (group, breach, payload) decisions atomically; returns per decision what happened.
        ``muted``: state moves as usual but no message is queued (``Applied.suppressed`` says which)."""
        if not decisions:
            return []
        idle_ttl = rule.cooldown_seconds + 86_400  # remember last_sent past the cooldown
        pipe = self._redis.pipeline(transaction=False)
        for group, breach, payload in decisions:
            self._apply(
                keys=[f"{self._tag}:state:{rule.id}:{group}", f"{self._tag}:firing:{rule.id}", self._outbox],
                args=[now_ms, int(breach), rule.cooldown_seconds * 1000, int(rule.renotify), idle_ttl,
                      group, rule.id, json.dumps(payload), int(muted)],
                client=pipe,
            )
        return [_applied(_text(r)) for r in pipe.execute()]

    def unannounce(self, messages: list[Outgoing]) -> None:
        """These firing messages were dropped unsent: their firings count as not announced again."""
        pipe = self._redis.pipeline(transaction=False)
        for m in messages:
            self._unannounce(keys=[f"{self._tag}:state:{m.rule_id}:{m.group}"], args=[m.episode, m.at_ms], client=pipe)
        pipe.execute()

    def take(self, count: int = 100) -> list[Outgoing]:
        """Messages this replica must deliver: abandoned ones (past the lease), then new ones."""
        self._ensure_group()
        _, claimed, *_ = self._redis.xautoclaim(self._outbox, _GROUP, self.consumer, self._lease_ms,
                                                start_id="0-0", count=count)
        entries = list(claimed)
        if len(entries) < count:
            # redis-py's return type is a union over RESP2 and RESP3; this client speaks RESP2 (a list)
            for _, stream_entries in cast(list | None, self._redis.xreadgroup(
                    _GROUP, self.consumer, {self._outbox: ">"}, count=count - len(entries))) or []:
                entries.extend(stream_entries)
        out = []
        for entry_id, fields in entries:
            if not fields:  # trimmed away before it was claimed
                self.done(_text(entry_id))
                continue
            f = {_text(k): _text(v) for k, v in fields.items()}
            out.append(Outgoing(_text(entry_id), f["kind"], f["rule_id"], f["group"], int(f["episode"]),
                                int(f["at_ms"]), json.loads(f["payload"])))
        return out

    def done(self, *entry_ids: str) -> None:
        """The messages were delivered or given up on: remove them from the outbox."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(self._outbox, _GROUP, *entry_ids)
        pipe.xdel(self._outbox, *entry_ids)
        pipe.execute()

    def record_failure(self, message: Outgoing, error: str, attempts: int) -> None:
        """Keep the last failed deliveries (no webhook URL in them) for operators to inspect."""
        record = {"rule_id": message.rule_id, "group": message.group, "kind": message.kind,
                  "at_ms": message.at_ms, "error": error, "attempts": attempts}
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(f"{self._tag}:failed", json.dumps(record))
        pipe.ltrim(f"{self._tag}:failed", 0, _FAILED_KEPT - 1)
        pipe.execute()

    def failures(self) -> list[dict[str, Any]]:
        """The most recent failed deliveries, newest first."""
        return [json.loads(r) for r in self._redis.lrange(f"{self._tag}:failed", 0, -1)]

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # id 0: entries queued before any replica created the group are still delivered
            self._redis.xgroup_create(self._outbox, _GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True


def _applied(reply: str) -> Applied:
    kind, transition, suppressed, episode = reply.split("|")  # the script's "kind|transition|suppressed|episode"
    return Applied(kind, transition, suppressed, int(episode))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
