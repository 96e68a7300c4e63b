"""Request bodies, validated by marshmallow: unknown fields, wrong types and oversize lists are 422."""

import re
from uuid import UUID

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from counts.representation import LEVELS
from counts.settings import BADGE_POLICIES

MAX_BATCH_USERS = 1_000
MAX_BUMP_USERS = 10_000
MAX_MEMBERS = 10_000
MAX_BODY_CHARS = 10_000
MAX_MENTIONS = 256  # ids a message may name; beyond it, mention everyone

# RFC 9562 text form only: uuid.UUID() also takes braces, "urn:uuid:", no dashes, and digits
# from other scripts (Arabic-Indic, fullwidth), which no client means as an id.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def parse_uuid(value: str) -> UUID:
    """A UUID in its canonical text form, or ValueError."""
    return UUID(uuid_text(value))


def uuid_text(value: str) -> str:
    """The lower-case text of a UUID given in its canonical text form, or ValueError.

    What the 304 path keys Redis and compares principals with: a UUID object, only to turn it
    back into text for the keys, costs more than the rest of its id handling.
    """
    if not isinstance(value, str) or not _CANONICAL_UUID.fullmatch(value):
        raise ValueError("not a canonical UUID")
    return value.lower()


class CanonicalUUID(fields.UUID):
    """A UUID field that accepts only the canonical text form (see parse_uuid)."""

    def _validated(self, value):
        if isinstance(value, UUID):
            return value
        try:
            return parse_uuid(value)
        except ValueError:
            raise self.make_error("invalid_uuid") from None


class StrictInteger(fields.Integer):
    """An integer that refuses JSON booleans (Python counts True as 1)."""

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """A JSON boolean only: marshmallow also takes 1, "yes" and "on", which no client means."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _storable_text(value: str) -> None:
    """Postgres text holds UTF-8 without NUL; say so instead of failing at insert."""
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode (no lone surrogates).") from None


class ConversationCreate(Schema):
    member_ids = fields.List(CanonicalUUID(), required=True,
                             validate=validate.Length(min=1, max=MAX_MEMBERS))
    parent_id = CanonicalUUID(load_default=None, allow_none=True)  # a thread of this conversation
    root_seq = StrictInteger(strict=True, load_default=None, allow_none=True,
                             validate=validate.Range(min=1, max=2**62))

    @validates_schema
    def root_needs_parent(self, data, **kwargs):
        """A thread's root message is in its parent."""
        if data.get("root_seq") is not None and data.get("parent_id") is None:
            raise ValidationError("root_seq needs parent_id.", "root_seq")


class MemberAdd(Schema):
    user_id = CanonicalUUID(required=True)


class MessageMentions(Schema):
    user_ids = fields.List(CanonicalUUID(), load_default=list,
                           validate=validate.Length(max=MAX_MENTIONS))
    all = StrictBoolean(load_default=False)


class MessageCreate(Schema):
    sender_id = CanonicalUUID(required=True)
    body = fields.String(required=True,
                         validate=[validate.Length(min=1, max=MAX_BODY_CHARS), _storable_text])
    mentions = fields.Nested(MessageMentions, load_default=None)


class MemberUpdate(Schema):
    notify = fields.String(required=True, validate=validate.OneOf(LEVELS))


class MarkUnread(Schema):
    user_id = CanonicalUUID(required=True)
    from_seq = StrictInteger(strict=True, load_default=None, allow_none=True,
                             validate=validate.Range(min=1, max=2**62))


class UserSettings(Schema):
    badge_policy = fields.String(required=True, allow_none=True,
                                 validate=validate.OneOf(BADGE_POLICIES))


class MarkRead(Schema):
    user_id = CanonicalUUID(required=True)
    up_to_seq = StrictInteger(strict=True, load_default=None, allow_none=True,
                              validate=validate.Range(min=0, max=2**62))


class Bump(Schema):
    user_ids = fields.List(CanonicalUUID(), required=True,
                           validate=validate.Length(min=1, max=MAX_BUMP_USERS))


class BatchUser(Schema):
    user_id = CanonicalUUID(required=True)
    etag = fields.String(required=True, allow_none=True, validate=validate.Length(max=200))


class Batch(Schema):
    users = fields.List(fields.Nested(BatchUser), required=True,
                        validate=validate.Length(min=1, max=MAX_BATCH_USERS))

    @validates_schema
    def no_duplicate_users(self, data, **kwargs):
        """Each user once: one answer per user, in request order."""
        ids = [entry["user_id"] for entry in data.get("users", [])]
        if len(ids) != len(set(ids)):
            raise ValidationError("Each user_id may appear once.", "users")


conversation_create = ConversationCreate()
member_add = MemberAdd()
message_create = MessageCreate()
member_update = MemberUpdate()
mark_unread = MarkUnread()
user_settings = UserSettings()
mark_read = MarkRead()
bump = Bump()
batch = Batch()
