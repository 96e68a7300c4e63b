"""What is pushed: the user's current counts, read at send time, never the event that caused it.

A burst of events therefore coalesces into one push with the latest total, and a read on another
device pushes a badge that is already right (DESIGN.md invariant 12). No message bodies.
"""

import time
from dataclasses import dataclass

# Provider-side replacement: a newer push replaces an undelivered older one on the same device
# (Web Push Topic, apns-collapse-id, FCM collapse_key). At most 32 URL-safe characters (RFC 8030).
COLLAPSE_KEY = "unread"


@dataclass(frozen=True)
class Push:
    """One push to one user's devices."""

    user_id: str
    total: int
    unread_conversations: int
    conversation_id: str | None
    alert: bool  # a new message: show it; False: only the badge changed
    expires_at: float  # epoch seconds: COUNTS_PUSH_MAX_AGE after the newest write it reports
    badge: int | None = None  # the body's badge (its policy's number); None: the total
    mentions: int = 0

    @property
    def icon_badge(self) -> int:
        """The number for the app icon: the body's badge, as a poll would answer it (invariant 14)."""
        return self.total if self.badge is None else self.badge

    def body(self) -> dict:
        """The JSON every provider carries (inside its own envelope)."""
        return {"type": "unread", "user_id": self.user_id, "total": self.total,
                "unread_conversations": self.unread_conversations, "badge": self.icon_badge,
                "mentions": self.mentions, "conversation_id": self.conversation_id,
                "alert": self.alert}

    def ttl(self, now: float | None = None) -> int:
        """Seconds the push service may keep it for an offline device (at least 1: 0 means drop)."""
        return max(1, int(self.expires_at - (time.time() if now is None else now)))

