"""Each user's calendar list: which calendars it holds, at what role, and its change counter.

Like a calendar's events, a list has a change counter: each entry added,
changed or removed takes the next value (``seq``), and list sync tokens are
positions on it. Removed entries stay as tombstones so incremental listings
can report them with ``deleted: true``. Mutated only under the store's lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ListEntry:
    """One calendar on one user's list; ``role`` None once removed."""

    calendar_id: str
    role: str | None
    seq: int
    position: int  # order of first appearance, for stable full listings

    @property
    def deleted(self) -> bool:
        """Removed from the list (unshared, or the calendar deleted)."""
        return self.role is None


@dataclass
class UserCalendarList:
    """One user's list."""

    counter: int = 0
    epoch: int = 0
    entries: dict[str, ListEntry] = field(default_factory=dict)


class CalendarLists:
    """Every user's list. ``report_role_changes`` False: a role change alone keeps ``seq``."""

    def __init__(self) -> None:
        self.report_role_changes = True
        self._lists: dict[str, UserCalendarList] = {}

    def reset(self) -> None:
        """Forget every list."""
        self._lists.clear()
        self.report_role_changes = True

    def of(self, user: str) -> UserCalendarList:
        """The user's list, empty on first use."""
        found = self._lists.get(user)
        if found is None:
            found = self._lists[user] = UserCalendarList()
        return found

    def put(self, user: str, calendar_id: str, role: str) -> bool:
        """Add the calendar at ``role`` or change its role; True if the list changed."""
        user_list = self.of(user)
        entry = user_list.entries.get(calendar_id)
        if entry is None:
            user_list.counter += 1
            user_list.entries[calendar_id] = ListEntry(
                calendar_id, role, user_list.counter, len(user_list.entries)
            )
            return True
        if entry.role == role:
            return False
        was_deleted = entry.deleted
        entry.role = role
        if was_deleted or self.report_role_changes:
            user_list.counter += 1
            entry.seq = user_list.counter
            return True
        return False

    def remove(self, user: str, calendar_id: str) -> bool:
        """Mark the calendar removed from the user's list; True if it was on it."""
        user_list = self.of(user)
        entry = user_list.entries.get(calendar_id)
        if entry is None or entry.deleted:
            return False
        user_list.counter += 1
        entry.role = None
        entry.seq = user_list.counter
        return True

    def entry(self, user: str, calendar_id: str) -> ListEntry | None:
        """The user's live entry for a calendar, None if it is not on the list."""
        found = self.of(user).entries.get(calendar_id)
        return None if found is None or found.deleted else found

    def invalidate(self, user: str) -> None:
        """Every list sync token issued to ``user`` so far now answers 410."""
        self.of(user).epoch += 1
