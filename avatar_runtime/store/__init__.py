"""Durable avatar storage."""

from avatar_runtime.store.avatar_store import AvatarStore

__all__ = ["AvatarStore"]
