"""Database models: fields, constraints and indexes only; reads live in selectors/managers."""
from .apikeys import APIKey
from .catalog import Item, ShopUser
from .events import Event, EventType
from .learning import InterestSegment, ItemEmbedding, TrainingRun, UserSegment
from .modelversions import ModelVersion

__all__ = [
    "APIKey", "Event", "EventType", "InterestSegment", "Item", "ItemEmbedding", "ModelVersion",
    "ShopUser", "TrainingRun", "UserSegment",
]
