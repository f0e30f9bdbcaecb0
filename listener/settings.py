"""Configuration from the environment (prefix UTTER_) and command-line flags."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from devstack.settings import ROOT, local_url, storage_admin_url, worker_url
from gpu.engine import DEFAULT_REQUESTS_IN_FLIGHT

QUEUES = ("generate", "design_preview", "clone", "transcribe", "storage_cleanup")


def default_database_url() -> str:
    return worker_url(local_url())


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ListenerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UTTER_", extra="ignore")

    # The listener logs in as its own role (utter_worker), never as a superuser.
    database_url: str = Field(
        default_factory=default_database_url, alias="UTTER_LISTENER_DATABASE_URL"
    )
    engine: str = "auto"
    # The speech recogniser for clones inserted without a transcript: auto | modal |
    # qwen-local | none (gpu/select.py, select_transcriber).
    transcriber: str = "auto"
    worker_id: str = Field(default_factory=default_worker_id)

    # Speech jobs (generate plus design_preview) this process keeps at its engine at
    # once. The GPU side batches chunks of every request in flight, so a fuller queue
    # means fuller model calls. None: what the engine says it takes
    # (gpu.engine.requests_in_flight: 16 for Modal, 3 for in-process engines).
    # Guidance for Modal: listeners x speech_in_flight ~= UTTER_MODAL_MAX_CONTAINERS x
    # UTTER_MODAL_MAX_INPUTS keeps every container's scheduler fed without queueing
    # at Modal; each job in flight also counts toward the database pool (docs/deploy.md).
    speech_in_flight: PositiveInt | None = None
    # Per-queue concurrency: how many jobs of each kind run at once in this process.
    # generate / design_preview default to 3/4 and 1/4 (at least 1) of speech_in_flight.
    concurrency_generate: PositiveInt | None = None
    concurrency_design_preview: PositiveInt | None = None
    concurrency_clone: PositiveInt = 2
    concurrency_transcribe: PositiveInt = 2
    concurrency_storage_cleanup: PositiveInt = 2
    concurrency_checkout: PositiveInt = 2

    # Stripe Checkout for credit purchases (docs/billing.md). Without a secret key the
    # listener leaves the checkout queue alone.
    stripe_secret_key: SecretStr = Field(default=SecretStr(""), alias="STRIPE_SECRET_KEY")
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_seconds: PositiveFloat = 30.0
    checkout_success_url: str = ""
    checkout_cancel_url: str = ""

    # A claimed message stays invisible this long; running jobs extend it every third of it.
    visibility_timeout_seconds: PositiveInt = 60
    max_attempts: PositiveInt = 3
    backoff_base_seconds: PositiveFloat = 2.0
    backoff_max_seconds: PositiveFloat = 300.0
    # The outer safety net around any engine. Engines keep their own, tighter limits;
    # the Modal engine's are 3600 s queued at Modal plus 1800 s running, so this must
    # exceed both together or the listener would give up on a job Modal still runs.
    job_timeout_seconds: PositiveFloat = 5700.0
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # The safety net under LISTEN/NOTIFY: a queue is read at least this often.
    poll_interval_seconds: PositiveFloat = 5.0
    progress_interval_seconds: PositiveFloat = 1.0
    batch_size: PositiveInt = 10
    # How long a database call keeps retrying through a lost connection.
    db_retry_seconds: PositiveFloat = 120.0

    storage: str = "local"  # local | supabase
    storage_dir: Path = ROOT / ".local" / "storage"
    # Local storage only: the login the local Storage API writes `storage.objects`
    # with (Supabase's Storage API logs in as supabase_storage_admin). Defaults to that
    # role, with its local password, on the listener's database.
    storage_database_url: str = ""
    supabase_url: str = ""
    supabase_service_role_key: str = ""

    metrics_file: Path | None = None
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # 0.0.0.0 where a scraper or a container's health check reaches in from outside.
    metrics_host: str = "127.0.0.1"

    # Errors (log records at ERROR and above, and crashes) go to Sentry when set;
    # needs the `sentry` extra (sentry-sdk).
    sentry_dsn: str = ""
    # Names the deployment in error reports: development, staging, production.
    environment: str = "development"

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        known = {"auto", "modal", "qwen-local", "espeak", "tone"}
        if value not in known:
            raise ValueError(f"must be one of {', '.join(sorted(known))}")
        return value

    @field_validator("transcriber")
    @classmethod
    def _known_transcriber(cls, value: str) -> str:
        known = {"auto", "modal", "qwen-local", "none"}
        if value not in known:
            raise ValueError(f"must be one of {', '.join(sorted(known))}")
        return value

    @field_validator("storage")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if value not in {"local", "supabase"}:
            raise ValueError("must be 'local' or 'supabase'")
        return value

    def local_storage_database_url(self) -> str:
        return self.storage_database_url or storage_admin_url(self.database_url)

    def concurrency(self, queue: str) -> int:
        chosen = getattr(self, f"concurrency_{queue}")
        if chosen is not None:
            return int(chosen)
        speech = self.speech_in_flight or DEFAULT_REQUESTS_IN_FLIGHT
        generate = max(1, speech * 3 // 4)
        return generate if queue == "generate" else max(1, speech - generate)

    def check_consistency(self) -> None:
        if self.storage == "supabase" and not (
            self.supabase_url and self.supabase_service_role_key
        ):
            raise ValueError(
                "UTTER_STORAGE=supabase needs UTTER_SUPABASE_URL and UTTER_SUPABASE_SERVICE_ROLE_KEY"
            )
        if self.stripe_secret_key.get_secret_value():
            if not self.stripe_secret_key.get_secret_value().startswith(("sk_", "rk_")):
                raise ValueError("STRIPE_SECRET_KEY must be a secret (sk_) or restricted (rk_) key")
            for name, url in (
                ("UTTER_CHECKOUT_SUCCESS_URL", self.checkout_success_url),
                ("UTTER_CHECKOUT_CANCEL_URL", self.checkout_cancel_url),
                ("UTTER_STRIPE_API_BASE", self.stripe_api_base),
            ):
                if not url.startswith(("https://", "http://")):
                    raise ValueError(
                        f"{name} must be an http(s) URL when STRIPE_SECRET_KEY is set (got {url!r})"
                    )
            # A checkout job does not heartbeat: its one API call must end before its
            # message becomes visible to another listener.
            if self.stripe_timeout_seconds >= self.visibility_timeout_seconds:
                raise ValueError(
                    "UTTER_STRIPE_TIMEOUT_SECONDS must be shorter than UTTER_VISIBILITY_TIMEOUT_SECONDS"
                )
        if self.visibility_timeout_seconds < 3:
            raise ValueError("UTTER_VISIBILITY_TIMEOUT_SECONDS must be at least 3")


class ConfigurationError(SystemExit):
    pass


def load(**overrides: object) -> ListenerSettings:
    """Settings from the environment, with flags on top; errors name the setting."""
    try:
        settings = ListenerSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
        settings.check_consistency()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            name = field if field.startswith("UTTER_") else f"UTTER_{field.upper()}"
            problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigurationError(
            "invalid listener configuration:\n  " + "\n  ".join(problems)
        ) from None
    except ValueError as exc:
        raise ConfigurationError(f"invalid listener configuration: {exc}") from None
    return settings
