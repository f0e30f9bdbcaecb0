"""Speech engines: the one interface the listener calls, and its implementations
(Modal, local Qwen3-TTS, offline espeak-ng)."""
