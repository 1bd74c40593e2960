"""Database models: fields, constraints and indexes only; reads live in selectors/managers."""
from .apikeys import APIKey
from .catalog import Item, ShopUser
from .events import Event, EventType
from .modelversions import ModelVersion

__all__ = ["APIKey", "Event", "EventType", "Item", "ModelVersion", "ShopUser"]
