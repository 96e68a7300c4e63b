"""A dispatcher round's plan: the claimed jobs, merged into one delivery per device."""

from collections import defaultdict
from dataclasses import dataclass
from uuid import UUID

from counts.push.devices import Device


@dataclass(frozen=True)
class Job:
    """A claimed push_jobs row."""

    id: int
    user_id: UUID
    device_id: UUID | None
    alert: bool
    conversation_id: UUID | None
    created: float
    attempts: int


@dataclass(frozen=True)
class Delivery:
    """What one device gets this round: the jobs addressed to it, merged."""

    device: Device
    alert: bool
    conversation_id: UUID | None
    oldest: float  # epoch of the oldest write it answers: latency counts from there
    newest: float  # epoch of the newest: COUNTS_PUSH_MAX_AGE counts from there
    attempts: int


def plan(jobs: list[Job], devices: list[Device]) -> list[Delivery]:
    """Merge each device's jobs (its user's, and retries for it) into one delivery."""
    by_user: dict[UUID, list[Job]] = defaultdict(list)
    for job in jobs:
        by_user[job.user_id].append(job)
    deliveries = []
    for device in devices:
        mine = [job for job in by_user.get(device.user_id, ())
                if job.device_id is None or job.device_id == device.id]
        if not mine:
            continue
        changed = [job.conversation_id for job in mine if job.conversation_id is not None]
        deliveries.append(Delivery(
            device, alert=any(job.alert for job in mine),
            conversation_id=changed[-1] if changed else None,  # jobs come in id order: the latest
            oldest=min(job.created for job in mine), newest=max(job.created for job in mine),
            attempts=max(job.attempts for job in mine)))
    return deliveries
