"""IP rate limiting per tenant: sliding windows, allow/deny lists, bans, decisions, rollups (pure core)."""

from agents.ratelimit.bans import BanTimers, Offense, ban_duration
from agents.ratelimit.commands import Applied, Rejected, apply_action
from agents.ratelimit.core import ALLOWED, BANNED, BLOCKED, STATES, THROTTLED, Batch, KeyState, RateLimiter
from agents.ratelimit.policy import CompiledPolicy, PrefixSet
from agents.ratelimit.rollup import MinuteRollups
from agents.ratelimit.window import DAY, HOUR, MINUTE, WINDOWS, RunLog, SlidingWindows

__all__ = [
    "ALLOWED",
    "BANNED",
    "BLOCKED",
    "DAY",
    "HOUR",
    "MINUTE",
    "STATES",
    "THROTTLED",
    "WINDOWS",
    "Applied",
    "BanTimers",
    "Batch",
    "CompiledPolicy",
    "KeyState",
    "MinuteRollups",
    "Offense",
    "PrefixSet",
    "RateLimiter",
    "Rejected",
    "RunLog",
    "SlidingWindows",
    "apply_action",
    "ban_duration",
]
