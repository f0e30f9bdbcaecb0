"""The webhook receiver's configuration from the environment; errors name the variable."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devstack.settings import billing_url, local_url


def default_database_url() -> str:
    return billing_url(local_url())


class BillingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UTTER_BILLING_", extra="ignore")

    # Its own least-privileged role (utter_billing): EXECUTE on one function, nothing else.
    database_url: str = Field(
        default_factory=default_database_url, alias="UTTER_BILLING_DATABASE_URL"
    )
    # The endpoint's signing secret from the Stripe dashboard (or `stripe listen`).
    stripe_webhook_secret: SecretStr = Field(alias="STRIPE_WEBHOOK_SECRET")
    host: str = "127.0.0.1"
    port: int = Field(default=54330, ge=0, le=65535)
    # Stripe's own default (stripe-python _webhook.py, Webhook.DEFAULT_TOLERANCE): older
    # signatures are refused, so a captured delivery cannot be replayed later.
    signature_tolerance_seconds: PositiveInt = 300
    # Stripe's event bodies are a few KiB; anything far bigger is not Stripe.
    max_body_bytes: PositiveInt = 1_048_576
    # How long a delivery waits through a lost database connection before it is
    # answered 503 (Stripe redelivers).
    db_retry_seconds: PositiveFloat = 5.0

    @field_validator("stripe_webhook_secret")
    @classmethod
    def _looks_like_a_signing_secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("whsec_"):
            raise ValueError("must be the endpoint's signing secret, which starts with whsec_")
        return value


class ConfigurationError(SystemExit):
    pass


def load() -> BillingSettings:
    try:
        return BillingSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            name = field if field.isupper() else f"UTTER_BILLING_{field.upper()}"
            if error["type"] == "missing":
                shown = "missing"
            elif "SECRET" in name or "DATABASE_URL" in name:
                shown = "a value that is not shown"  # secrets stay out of logs
            else:
                shown = repr(error.get("input"))
            problems.append(f"{name}: {error['msg']} (got {shown})")
        raise ConfigurationError(
            "invalid webhook receiver configuration:\n  " + "\n  ".join(problems)
        ) from None
