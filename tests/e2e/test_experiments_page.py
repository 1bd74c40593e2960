"""A merchandiser's view of an A/B experiment: the figures per variant, then stop it and promote the winner."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recommender.models import Experiment, ExposurePolicy
from tests.integration.experiment_data import make_experiment_data

pytestmark = pytest.mark.django_db(transaction=True)


def test_experiment_page_shows_the_figures_then_stop_and_promote(page, live_server, admin_login, screenshot):
    # given a running experiment whose boost arm buys about three times as often, aggregated into the count tables
    data = make_experiment_data(timezone.now().date() - timedelta(days=2))
    control, boost = data.control.name, data.boost.name
    n_ctl, n_boost = len(data.arms[control]), len(data.arms[boost])
    # when staff open the experiments list and the experiment from there
    admin_login()
    page.goto(f"{live_server.url}/admin/insights/experiments/")
    page.click(f"text={data.experiment.name}")
    page.wait_for_selector('svg[data-chart="rates-chart"]')
    assert page.inner_text("#experiment-status") == "running"
    # then the chart's dots carry each arm's conversion rate with its interval
    dot = page.locator(f'circle[data-label="conversion rate"][data-series="{boost}"]')
    assert float(dot.get_attribute("data-value")) == pytest.approx(data.did[boost]["purchased"] / n_boost, abs=1e-6)
    assert float(dot.get_attribute("data-low")) < float(dot.get_attribute("data-value")) < float(dot.get_attribute("data-high"))
    assert "95% CI" in dot.locator("title").text_content()
    ctl_dot = page.locator(f'circle[data-label="conversion rate"][data-series="{control}"]')
    assert float(ctl_dot.get_attribute("data-value")) == pytest.approx(data.did[control]["purchased"] / n_ctl, abs=1e-6)
    # and the tables show users, the verdict and revenue per user
    rates = page.inner_text('table[data-table="rates"]')
    assert f"{n_boost:,}" in rates and f"{n_ctl:,}" in rates and "Better than control" in rates
    revenue = page.inner_text('table[data-table="revenue"]')
    rpu = data.revenue[boost] / n_boost
    assert f"{rpu:,.3g}" in revenue
    assert page.inner_text("#suggested-winner") == boost
    # when they stop the experiment
    page.click("#btn-stop")
    page.wait_for_selector(".messagelist")
    assert "Stopped" in page.inner_text(".messagelist")
    assert page.inner_text("#experiment-status") == "stopped"
    screenshot("admin-experiment")
    # and promote the suggested winner (pre-selected)
    assert page.locator("#promote-variant").input_value() == str(data.boost.pk)
    page.click("#btn-promote")
    page.wait_for_selector(".messagelist")
    message = page.inner_text(".messagelist")
    assert f"Promoted '{boost}'" in message and "is now the default policy" in message
    # then the winner's policy is the default, and the page shows the winner with no more buttons
    assert ExposurePolicy.objects.get(is_default=True).pk == data.boost.policy_id
    assert Experiment.objects.get(pk=data.experiment.pk).winner_id == data.boost.pk
    assert page.inner_text("#experiment-winner") == boost
    assert page.locator("#btn-promote").count() == 0 and page.locator("#btn-stop").count() == 0
