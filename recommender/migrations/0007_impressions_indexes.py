# Impression rows (one per listed item, written on every request) leave the indexes no lookup
# of impressions needs: see the comments on Event.Meta.indexes and bench/impressions.py.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('recommender', '0006_reportday_items_shown'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='event',
            name='rec_event_request',
        ),
        migrations.AddIndex(
            model_name='event',
            index=models.Index(
                condition=models.Q(('request_id__isnull', False), models.Q(('event_type', 7), _negated=True)),
                fields=['request_id'],
                name='rec_event_request_noimp',
            ),
        ),
    ]
