"""Database models: fields, constraints and indexes only; reads live in selectors/managers."""
from .apikeys import APIKey
from .catalog import Item, ShopUser
from .events import Event, EventType, ImpressionBatch
from .learning import InterestSegment, ItemEmbedding, TrainingRun, UserSegment
from .modelversions import ModelVersion
from .policy import ABVariant, Experiment, ExposurePolicy, ItemRule, Promotion, ServedList
from .reports import DailyItemCount, DailySegmentCount, DailyVariantUser, ReportDay, Segment, WeeklyItemCount

__all__ = [
    "ABVariant", "APIKey", "DailyItemCount", "DailySegmentCount", "DailyVariantUser", "Event", "EventType", "Experiment",
    "ExposurePolicy",
    "ImpressionBatch", "InterestSegment", "Item", "ItemEmbedding", "ItemRule", "ModelVersion", "Promotion",
    "ReportDay", "Segment",
    "ServedList", "ShopUser", "TrainingRun", "UserSegment", "WeeklyItemCount",
]
