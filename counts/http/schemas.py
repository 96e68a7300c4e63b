"""Request bodies, validated by marshmallow: unknown fields, wrong types and oversize lists are 422."""

import re
from uuid import UUID

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

MAX_BATCH_USERS = 1_000
MAX_BUMP_USERS = 10_000
MAX_MEMBERS = 10_000
MAX_BODY_CHARS = 10_000

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


class MemberAdd(Schema):
    user_id = CanonicalUUID(required=True)


class MessageCreate(Schema):
    sender_id = CanonicalUUID(required=True)
    body = fields.String(required=True,
                         validate=[validate.Length(min=1, max=MAX_BODY_CHARS), _storable_text])


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
mark_read = MarkRead()
bump = Bump()
batch = Batch()


# --- push devices ------------------------------------------------------------------------------

def _b64url_bytes(length: int, what: str):
    """A validator: base64url (padding optional) of exactly `length` bytes."""
    def check(value: str) -> None:
        from counts.push.vapid import b64url_decode

        try:
            raw = b64url_decode(value)
        except ValueError:
            raise ValidationError(f"Must be the base64url {what}.") from None
        if len(raw) != length:
            raise ValidationError(f"Must be the base64url {what} ({length} bytes).")
    return check


def _p256_point(value: str) -> None:
    """The browser's P-256 public key: an uncompressed point on the curve, base64url."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from counts.push.vapid import b64url_decode

    _b64url_bytes(65, "P-256 public key")(value)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(value))
    except ValueError:
        raise ValidationError("Must be a point on the P-256 curve.") from None


class SubscriptionKeys(Schema):
    p256dh = fields.String(required=True, validate=_p256_point)
    auth = fields.String(required=True, validate=_b64url_bytes(16, "auth secret"))


class Subscription(Schema):
    """A browser's PushSubscription, as PushSubscription.toJSON() gives it."""

    endpoint = fields.String(required=True, validate=[validate.Length(min=9, max=2048),
                                                      validate.URL(schemes={"https"}, require_tld=False)])
    expirationTime = fields.Integer(load_default=None, allow_none=True)  # noqa: N815 - the browser's name
    keys = fields.Nested(SubscriptionKeys, required=True)


class WebPushDevice(Schema):
    platform = fields.String(required=True, validate=validate.Equal("webpush"))
    subscription = fields.Nested(Subscription, required=True)


class ApnsDevice(Schema):
    platform = fields.String(required=True, validate=validate.Equal("apns"))
    # 32 bytes today; Apple asks providers not to assume the length.
    token = fields.String(required=True, validate=validate.Regexp(r"^(?:[0-9a-fA-F]{2}){32,100}$"))
    topic = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,154}$"))
    environment = fields.String(load_default="production",
                                validate=validate.OneOf(["production", "sandbox"]))


class FcmDevice(Schema):
    platform = fields.String(required=True, validate=validate.Equal("fcm"))
    token = fields.String(required=True, validate=validate.Regexp(r"^[\x21-\x7e]{1,4096}$"))


DEVICE_SCHEMAS = {"webpush": WebPushDevice(), "apns": ApnsDevice(), "fcm": FcmDevice()}


class DeviceRegistration(Schema):
    """One of the platform schemas above, chosen by `platform`."""

    def load(self, data, **kwargs):
        """Validate with the schema of the body's platform."""
        platform = data.get("platform") if isinstance(data, dict) else None
        # Only a string can name a platform (a list or an object is not even a dict key).
        schema = DEVICE_SCHEMAS.get(platform) if isinstance(platform, str) else None
        if schema is None:
            raise ValidationError({"platform": ["Must be one of: webpush, apns, fcm."]})
        return schema.load(data, **kwargs)


device_registration = DeviceRegistration()
