from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    name = "recommender"
    verbose_name = "Recommender"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import conf
        from .schedule import do_install_default_schedule

        conf.settings.validate()
        post_migrate.connect(do_install_default_schedule, sender=self)
