"""The generated Grafana JSON: committed and current, and structurally sound."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dashboards.boards import BOARDS
from dashboards.build import JSON_DIR, build_all, main, render, stale_files
from dashboards.model import CONSOLE_URL_DEFAULT, DATASOURCE_UID, PLUGIN_ID, DataLink, Panel, to_grafana
from dashboards.validate import check_dashboard, check_dashboards


def committed() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json"))]


def test_committed_json_matches_the_builders() -> None:
    """`python -m dashboards.build` has been run after the last change to a board."""
    assert stale_files() == []
    assert main(["--check"]) == 0


def test_check_mode_reports_a_stale_file(tmp_path: Any) -> None:
    """An edited JSON file is reported as out of date, a missing one too."""
    assert main(["--out", str(tmp_path)]) == 0
    first = next(iter(build_all()))
    (tmp_path / first).write_text("{}")
    (tmp_path / "extra.json").write_text("{}")
    assert stale_files(tmp_path) == sorted([first, "extra.json"])
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_committed_dashboards_pass_the_structural_check() -> None:
    """Four boards, no structural errors, every target on the ClickHouse plugin with raw SQL."""
    models = committed()
    assert [m["uid"] for m in models] == sorted(["tw-overview", "tw-ratelimit", "tw-anomalies", "tw-trials"])
    assert check_dashboards(models) == []
    for m in models:
        for p in m["panels"]:
            for t in p["targets"]:
                assert t["datasource"] == {"type": PLUGIN_ID, "uid": "${datasource}"}
                assert t["rawSql"].strip()
        ds = next(v for v in m["templating"]["list"] if v["name"] == "datasource")
        assert ds["current"]["value"] == DATASOURCE_UID


def test_render_is_stable() -> None:
    """Rendering twice gives byte-identical text (sorted keys), so diffs only show real changes."""
    models = build_all()
    assert all(render(m) == render(copy.deepcopy(m)) for m in models.values())


def mutate(edit: str) -> list[str]:
    model = copy.deepcopy(build_all()["tw-ratelimit.json"])
    panel, target = model["panels"][0], model["panels"][0]["targets"][0]
    if edit == "dup-panel-id":
        model["panels"][1]["id"] = panel["id"]
    elif edit == "foreign-datasource":
        target["datasource"] = {"type": "prometheus", "uid": "prom"}
    elif edit == "undefined-variable":
        target["rawSql"] += " AND x = ${nope:singlequote}"
    elif edit == "unquoted-variable":
        target["rawSql"] = target["rawSql"].replace("${tenant:singlequote}", "$tenant")
    elif edit == "no-targets":
        panel["targets"] = []
    elif edit == "format-mismatch":
        target["format"] = 1
    elif edit == "overlap":
        model["panels"][1]["gridPos"] = dict(panel["gridPos"])
    elif edit == "bad-uid":
        model["uid"] = "has spaces"
    elif edit == "link-undefined-variable":
        model["templating"]["list"] = [v for v in model["templating"]["list"] if v["name"] != "console_url"]
    elif edit == "no-datasource-variable":
        model["templating"]["list"] = [v for v in model["templating"]["list"] if v["name"] != "datasource"]
    return check_dashboard(model)


@pytest.mark.parametrize(("edit", "message"), [
    ("dup-panel-id", "panel ids"),
    ("foreign-datasource", "datasource must be"),
    ("undefined-variable", "undefined variable $nope"),
    ("unquoted-variable", "quoting format"),
    ("no-targets", "no targets"),
    ("format-mismatch", "does not match queryType"),
    ("overlap", "overlap"),
    ("bad-uid", "uid"),
    ("no-datasource-variable", "no `datasource` variable"),
    ("link-undefined-variable", "data link uses undefined variable $console_url"),
])
def test_structural_check_catches_each_defect(edit: str, message: str) -> None:
    """Each broken variant of a good board is reported with a message naming the defect."""
    errors = mutate(edit)
    assert any(message in e for e in errors), errors


def test_duplicate_uids_across_boards_are_reported() -> None:
    """Two boards sharing a uid would overwrite each other in Grafana."""
    a, b = copy.deepcopy(committed()[:2])
    b["uid"] = a["uid"]
    assert any("duplicate dashboard uid" in e for e in check_dashboards([a, b]))


def test_offender_and_anomaly_rows_link_into_the_owner_console() -> None:
    """Rows of both "Top offenders" tables and of the anomalies timeline carry a data link into the
    console, on a `console_url` variable provisioned with the boards (default: the local console)."""
    models = {m["uid"]: m for m in committed()}
    want = {
        ("tw-overview", "Top offenders"):
            "${console_url}/offenders?tenant=${__data.fields.tenant_id:percentencode}"
            "&ip=${__data.fields.ip:percentencode}",
        ("tw-ratelimit", "Top offenders (24 h)"):
            "${console_url}/offenders?tenant=${__data.fields.tenant_id:percentencode}"
            "&ip=${__data.fields.ip:percentencode}",
        ("tw-anomalies", "Timeline"): "${console_url}/anomalies/${__data.fields.id:percentencode}",
    }
    for (uid, title), url in want.items():
        p = next(p for p in models[uid]["panels"] if p["title"] == title)
        assert [link["url"] for link in p["fieldConfig"]["defaults"]["links"]] == [url]
    for m in models.values():
        var = next(v for v in m["templating"]["list"] if v["name"] == "console_url")
        assert (var["type"], var["query"], var["current"]["value"]) == ("textbox", CONSOLE_URL_DEFAULT,
                                                                        CONSOLE_URL_DEFAULT)
    other = to_grafana(BOARDS[0], console_url="https://console.example/")
    assert next(v for v in other["templating"]["list"] if v["name"] == "console_url")["query"] == (
        "https://console.example")


def test_a_link_to_a_column_the_panel_does_not_return_is_refused() -> None:
    """A data link reading `${__data.fields.x}` of a column the query does not return is a build error."""
    with pytest.raises(ValueError, match="does not return"):
        Panel("p", "table", "SELECT 1 AS a", ("a",), links=(DataLink("x", "${console_url}/${__data.fields.b}"),))
    with pytest.raises(ValueError, match="no palette colour"):
        Panel("p", "table", "SELECT 1 AS a", ("a",), states=("purple-ish",))
