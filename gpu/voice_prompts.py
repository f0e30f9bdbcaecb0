"""Voice clone prompts, made once per (voice id, reference hash) and kept.

A clone prompt (qwen-tts `create_voice_clone_prompt`: the reference's codec codes and
speaker embedding, and its transcript for in-context cloning) costs an encode of the
reference. Requests name a voice's prepared reference by id and content hash
(gpu.engine.VoiceReference) instead of carrying the audio. The speech side looks for
the prompt in memory (QwenRuntime's LRU), then in a `PromptStore` folder (on Modal a
Volume shared by every container), and only when both lack it fetches the reference
from the request's short-lived URL, checks it against the hash, encodes it once and
keeps the prompt in both.

A voice whose reference changes gets a new hash, so a stale prompt is never found
under it; saving a voice's new prompt removes its older ones. A deleted voice is never
named by a request again (its generations lose the voice and its reference object is
removed from Storage), and its prompt file is retired by `PromptStore.prune`, which
the Modal app runs daily for files older than `PROMPT_MAX_AGE_SECONDS`.

`torch` and `qwen_tts` are imported lazily, as in gpu/qwen_runtime.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gpu.engine import VoiceReference

log = logging.getLogger(__name__)

# A normalised reference of 5 minutes (the longest upload) is 14.4 MB at 24 kHz; a
# reference URL that serves much more is not one of ours.
MAX_REFERENCE_BYTES = 32 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 30.0
# A prompt file unused by new encodes for this long is removed by the daily prune; the
# next request of a live voice rebuilds it from Storage (one encode).
PROMPT_MAX_AGE_SECONDS = 30 * 24 * 3600

_SHA256 = re.compile(r"[0-9a-f]{64}")
_VOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ReferenceUnavailable(Exception):
    """The reference could not be read from its URL. `retryable`: a fresh request (with
    a fresh URL) may succeed (network, an expired URL), or not (gone, altered)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def check_reference(reference: VoiceReference) -> None:
    """A ValueError unless the reference names a voice and a hash that can key a file."""
    if not _VOICE_ID.fullmatch(reference.voice_id):
        raise ValueError(f"a clone request needs a voice id, got {reference.voice_id!r}")
    if not _SHA256.fullmatch(reference.sha256):
        raise ValueError(f"a clone request needs its reference's sha256, got {reference.sha256!r}")


def fetch_reference(
    reference: VoiceReference,
    *,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    max_bytes: int = MAX_REFERENCE_BYTES,
) -> bytes:
    """The reference WAV from its URL (https/http: a signed Storage URL; file: the
    local storage stand-in's file), checked against its hash. Blocking."""
    parts = urlsplit(reference.url)
    if parts.scheme == "file":
        try:
            with open(unquote(parts.path), "rb") as file:
                data = file.read(max_bytes + 1)
        except FileNotFoundError:
            raise ReferenceUnavailable(
                f"the reference of voice {reference.voice_id} is gone ({reference.url})",
                retryable=False,
            ) from None
        except OSError as exc:
            raise ReferenceUnavailable(
                f"the reference of voice {reference.voice_id} could not be read here: {exc} "
                "(a file:// reference is readable only on the listener's machine; the Modal "
                "engine needs UTTER_STORAGE=supabase)",
                retryable=False,
            ) from None
    elif parts.scheme in ("https", "http"):
        try:
            with urllib.request.urlopen(reference.url, timeout=timeout) as response:
                data = response.read(max_bytes + 1)
        except urllib.error.HTTPError as exc:
            # Storage answers 400 for an expired or bad token and for a missing object
            # alike (its errors carry the real status in the body): a fresh request
            # signs a fresh URL, and a missing reference then fails for good at the
            # listener, which cannot sign a URL for an object that is not there.
            raise ReferenceUnavailable(
                f"Storage refused the reference of voice {reference.voice_id}: HTTP {exc.code}",
                retryable=True,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReferenceUnavailable(
                f"the reference of voice {reference.voice_id} could not be fetched: {exc}",
                retryable=True,
            ) from None
    else:
        raise ReferenceUnavailable(
            f"unsupported reference URL scheme {parts.scheme!r} for voice {reference.voice_id}",
            retryable=False,
        )
    if len(data) > max_bytes:
        raise ReferenceUnavailable(
            f"the reference of voice {reference.voice_id} is over {max_bytes} bytes",
            retryable=False,
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != reference.sha256:
        raise ReferenceUnavailable(
            f"the reference of voice {reference.voice_id} does not match its hash "
            f"(expected {reference.sha256}, got {digest}): it changed after it was prepared",
            retryable=False,
        )
    return data


def prompt_to_fields(prompt: Any) -> dict[str, Any]:
    """A qwen-tts VoiceClonePromptItem (qwen_tts 0.1.1, inference/qwen3_tts_model.py) as
    tensors and builtins only, so `torch.load(weights_only=True)` reads it back."""
    return {
        "ref_code": None if prompt.ref_code is None else prompt.ref_code.detach().cpu(),
        "ref_spk_embedding": prompt.ref_spk_embedding.detach().cpu(),
        "x_vector_only_mode": bool(prompt.x_vector_only_mode),
        "icl_mode": bool(prompt.icl_mode),
        "ref_text": prompt.ref_text,
    }


def prompt_from_fields(fields: dict[str, Any], device: str) -> Any:
    from qwen_tts.inference.qwen3_tts_model import VoiceClonePromptItem

    code = fields["ref_code"]
    return VoiceClonePromptItem(
        ref_code=None if code is None else code.to(device),
        ref_spk_embedding=fields["ref_spk_embedding"].to(device),
        x_vector_only_mode=bool(fields["x_vector_only_mode"]),
        icl_mode=bool(fields["icl_mode"]),
        ref_text=fields["ref_text"],
    )


def _nothing() -> None:
    return None


class PromptStore:
    """Clone prompts as files `<root>/<voice id>/<sha256>.pt`.

    On Modal, `root` is a mounted Volume: `refresh` reloads it (another container may
    have committed the prompt since this one mounted it) and `publish` commits it (so
    the others see a new file), as modal.Volume's `reload` and `commit` do; both default
    to nothing for a plain folder."""

    def __init__(
        self,
        root: Path,
        *,
        refresh: Callable[[], None] = _nothing,
        publish: Callable[[], None] = _nothing,
    ) -> None:
        self.root = root
        self.refresh = refresh
        self.publish = publish

    def path(self, reference: VoiceReference) -> Path:
        check_reference(reference)
        return self.root / reference.voice_id / f"{reference.sha256}.pt"

    def load(self, reference: VoiceReference) -> dict[str, Any] | None:
        """The stored prompt fields, or None. A file made from another transcript (which
        a ready voice never changes) is not this prompt."""
        path = self.path(reference)
        if not path.is_file():
            try:
                self.refresh()
            except Exception:
                log.warning("reloading the prompt store failed", exc_info=True)
        if not path.is_file():
            return None
        import torch

        try:
            with path.open("rb") as file:
                fields: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=True)
        except Exception:
            log.warning("stored prompt %s is unreadable; rebuilding it", path, exc_info=True)
            return None
        if fields.get("icl_mode") and fields.get("ref_text") != reference.transcript:
            return None
        return fields

    def save(self, reference: VoiceReference, fields: dict[str, Any]) -> None:
        """Writes the prompt (atomically), removes the voice's prompts of older hashes,
        and publishes."""
        import torch

        path = self.path(reference)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with temporary.open("wb") as file:
            torch.save(fields, file)
        os.replace(temporary, path)
        for stale in path.parent.glob("*.pt"):
            if stale != path:
                stale.unlink(missing_ok=True)
        try:
            self.publish()
        except Exception:
            # The prompt still serves this container; another one rebuilds its own.
            log.warning(
                "publishing the prompt of voice %s failed", reference.voice_id, exc_info=True
            )

    def prune(self, max_age_seconds: float, *, now: float | None = None) -> list[Path]:
        """Removes prompt files written more than `max_age_seconds` ago (and emptied
        voice folders), then publishes; returns what it removed."""
        self.refresh()
        cutoff = (time.time() if now is None else now) - max_age_seconds
        removed = []
        for path in sorted(self.root.glob("*/*.pt")):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed.append(path)
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if removed:
            self.publish()
        return removed
