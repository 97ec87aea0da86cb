"""Setup's words and conveniences in the forms: the scopes under Setup's labels, Copy buttons carrying the
exact consumer key and `sf org login jwt` command, and phase 2's "View in Setup" link, against the local org."""

from __future__ import annotations

import re
from html import unescape

import pytest

from runbook.ui import access_form, certificate_form, connected_app_form, verify_form

APP_MANAGER = "/lightning/setup/NavigationMenus/home"
ECA_MANAGER = "/lightning/setup/ManageExternalClientApplication/home"


def _copied(html: str) -> list[str]:
    """What each Copy button in ``html`` puts on the clipboard (its attribute as the browser decodes it)."""
    return [unescape(value) for value in re.findall(r'data-copy="([^"]*)"', html)]


def _links(html: str) -> dict[str, str]:
    return {unescape(text): unescape(href) for href, text in re.findall(r'<a [^>]*href="([^"]*)"[^>]*>([^<]*)</a>',
                                                                         html)}


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """The four phases applied through their forms, as a person would; shared, read-only."""
    workdir = tmp_path_factory.mktemp("words") / "work"  # org "local": the forms start the work folder's org
    done = {}
    for make in (certificate_form, connected_app_form, access_form, verify_form):
        ns = {"workdir": str(workdir), "callback_port": "auto"} if make is connected_app_form else {
            "workdir": str(workdir)}
        form = make(ns)
        assert form.apply() is not None, form.status.value
        done[make.__name__] = (form, ns)
    return workdir, done


def test_scopes_show_setups_labels_with_the_api_names_and_keep_the_values(tmp_path):
    field = connected_app_form(workdir=str(tmp_path)).fields["scopes"]
    labels = dict(field.widget.options)
    assert labels["Manage user data via APIs (api)"] == "api"
    assert labels["Manage user data via Web browsers (web)"] == "web"
    assert labels["Perform requests at any time (refresh_token, offline_access)"] == "refresh_token offline_access"
    assert labels["Access the identity URL service (id, profile, email, address, phone)"] == "id"
    assert field.value == ["api", "web", "refresh_token offline_access"]  # the notebook's default, as values


def test_a_scope_the_list_leaves_out_still_shows_when_the_notebook_names_it(tmp_path):
    field = connected_app_form(workdir=str(tmp_path), scopes=["api", "offline_access"]).fields["scopes"]
    assert ("offline_access", "offline_access") in field.widget.options
    assert field.value == ["api", "offline_access"]


def test_the_app_card_copies_the_exact_consumer_key_and_links_to_app_manager(forms):
    _workdir, done = forms
    form, ns = done["connected_app_form"]
    key = ns["app"].consumer_key
    assert _copied(form.result.value) == [key]
    assert _copied(ns["app"]._repr_html_()) == [key]  # the notebook cell's `app` card too
    assert _links(form.result.value) == {"View in Setup": ns["session"].instance_url + APP_MANAGER}
    assert "the local org has no Setup pages" in form.result.value


def test_the_hand_off_card_copies_the_consumer_key_and_the_sf_command(forms):
    _workdir, done = forms
    form, ns = done["verify_form"]
    handoff = ns["handoff"]
    assert handoff.sf_command.startswith("sf org login jwt ")
    copied = _copied(form.result.value)
    assert handoff.consumer_key in copied and handoff.sf_command in copied
    assert _copied(handoff._repr_html_()) == copied  # the notebook cell's `handoff` card too


def test_an_external_client_app_links_to_its_manager(tmp_path):
    workdir = tmp_path / "work"
    certificate_form(workdir=str(workdir)).apply()
    form = connected_app_form(workdir=str(workdir), callback_port="auto", app_kind="external_client_app")
    outcome = form.apply()
    assert outcome is not None, form.status.value
    assert outcome.result.app_kind == "external_client_app"
    assert _links(form.result.value) == {"View in Setup": outcome.names["session"].instance_url + ECA_MANAGER}
    assert _copied(form.result.value) == [outcome.result.consumer_key]
