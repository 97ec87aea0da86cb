"""The SOQL subset: parsing, schema checks and evaluation, without a server."""

from __future__ import annotations

import random
import re
import time

import pytest

from runbook.localorg.model import ids
from runbook.localorg.model.soql import compile_query
from runbook.localorg.model.soql_syntax import SoqlError, parse

PROFILE_ID = ids.make_id("Profile", 1)
OTHER_PROFILE_ID = ids.make_id("Profile", 2)
ROWS = {
    "Profile": [{"Id": PROFILE_ID, "Name": "System Administrator", "UserType": "Standard"},
                {"Id": OTHER_PROFILE_ID, "Name": "Standard User", "UserType": "Standard"}],
    "PermissionSet": [
        {"Id": ids.make_id("PermissionSet", 1), "Name": "X00e1", "Label": "00e1", "IsOwnedByProfile": True,
         "ProfileId": PROFILE_ID, "IsCustom": False, "NamespacePrefix": None},
        {"Id": ids.make_id("PermissionSet", 2), "Name": "CI_Login", "Label": "CI Login",
         "IsOwnedByProfile": False, "ProfileId": None, "IsCustom": True, "NamespacePrefix": None},
        {"Id": ids.make_id("PermissionSet", 3), "Name": "It's_Set", "Label": "It's set",
         "IsOwnedByProfile": False, "ProfileId": None, "IsCustom": True, "NamespacePrefix": None},
    ],
    "SetupEntityAccess": [
        {"Id": ids.make_id("SetupEntityAccess", 1), "ParentId": ids.make_id("PermissionSet", 1),
         "SetupEntityId": ids.make_id("ConnectedApplication", 1), "SetupEntityType": "ConnectedApplication"},
    ],
}


def run(query: str) -> dict:
    return compile_query(query).run(lambda name: ROWS.get(name, []), version="62.0")


def names(query: str) -> list[str]:
    return [record["Name"] for record in run(query)["records"]]


def test_keywords_and_field_names_ignore_case_and_answer_with_canonical_names():
    result = run("select id, NAME from permissionset where isownedbyprofile = FALSE order by name")
    assert result["totalSize"] == 2
    assert list(result["records"][0]) == ["attributes", "Id", "Name"]
    url = f"/services/data/v62.0/sobjects/PermissionSet/{ids.make_id('PermissionSet', 2)}"
    assert result["records"][0]["attributes"] == {"type": "PermissionSet", "url": url}


def test_relationship_fields_nest_with_their_own_attributes_and_null_when_unset():
    records = run("SELECT Name, Profile.Name FROM PermissionSet ORDER BY Name")["records"]
    assert records[0]["Profile"] is None  # CI_Login
    assert records[2]["Profile"]["Name"] == "System Administrator"
    assert records[2]["Profile"]["attributes"]["type"] == "Profile"


def test_two_hop_relationship_path():
    records = run("SELECT Id, Parent.Profile.Name FROM SetupEntityAccess WHERE Parent.Profile.Name = "
                  "'system administrator'")["records"]
    assert records[0]["Parent"]["Profile"]["Name"] == "System Administrator"


def test_string_comparison_ignores_case_and_escaped_quotes_work():
    assert names("SELECT Name FROM PermissionSet WHERE Label = 'it\\'s SET'") == ["It's_Set"]


def test_in_not_in_like_and_parentheses():
    assert names("SELECT Name FROM PermissionSet WHERE Name IN ('ci_login', 'nope')") == ["CI_Login"]
    assert names("SELECT Name FROM PermissionSet WHERE Name NOT IN ('CI_Login') AND IsCustom = true") == [
        "It's_Set"]
    assert names("SELECT Name FROM PermissionSet WHERE Name LIKE 'ci%'") == ["CI_Login"]
    assert names("SELECT Name FROM PermissionSet WHERE (Name = 'CI_Login' OR Name = 'X00e1') "
                 "AND IsCustom = false") == ["X00e1"]


def test_not_equals_matches_nulls_like_salesforce():
    assert sorted(names("SELECT Name FROM PermissionSet WHERE ProfileId != null")) == ["X00e1"]
    assert sorted(names(f"SELECT Name FROM PermissionSet WHERE ProfileId != '{PROFILE_ID}'")) == [
        "CI_Login", "It's_Set"]


def test_fifteen_character_ids_match_their_eighteen_character_form():
    assert names(f"SELECT Name FROM Profile WHERE Id = '{PROFILE_ID[:15]}'") == ["System Administrator"]


def test_semi_join():
    query = ("SELECT Name FROM PermissionSet WHERE Id IN (SELECT ParentId FROM SetupEntityAccess "
             "WHERE SetupEntityType = 'ConnectedApplication')")
    assert names(query) == ["X00e1"]


def test_order_limit_offset_and_count():
    assert names("SELECT Name FROM Profile ORDER BY Name DESC LIMIT 1") == ["System Administrator"]
    assert names("SELECT Name FROM Profile ORDER BY Name LIMIT 1 OFFSET 1") == ["System Administrator"]
    assert run("SELECT COUNT() FROM PermissionSet WHERE IsCustom = true") == {
        "totalSize": 2, "done": True, "records": []}


def test_column_metadata_nests_relationship_columns():
    columns = compile_query("SELECT Id, Profile.Name FROM PermissionSet").columns()
    assert columns["entityName"] == "PermissionSet" and columns["idSelected"] is True
    assert columns["keyPrefix"] == "0PS"
    assert [c["columnName"] for c in columns["columnMetadata"]] == ["Id", "Profile"]
    assert columns["columnMetadata"][1]["joinColumns"][0]["displayName"] == "Profile.Name"


@pytest.mark.parametrize(("query", "code", "fragment"), [
    ("SELECT Id FRM Profile", "MALFORMED_QUERY", "unexpected token: 'FRM'"),
    ("SELECT Id FROM Profile WHERE", "MALFORMED_QUERY", "unexpected token: <EOF>"),
    ("SELECT Id FROM Profile WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", "MALFORMED_QUERY",
     "unexpected token: 'OR'"),
    ("SELECT Id FROM Profile WHERE Name = 'unterminated", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id, FROM Profile", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
    ("SELECT Id FROM Profile LIMIT x", "MALFORMED_QUERY", "unexpected token: 'x'"),
    ("SELECT Id FROM Account", "INVALID_TYPE", "sObject type 'Account' is not supported"),
    ("SELECT Nope FROM Profile", "INVALID_FIELD", "No such column 'Nope' on entity 'Profile'"),
    ("SELECT Owner.Name FROM Profile", "INVALID_FIELD", "Didn't understand relationship 'Owner'"),
    ("SELECT Id FROM PermissionSet WHERE IsCustom = 'true'", "INVALID_QUERY_FILTER_OPERATOR",
     "must be of type boolean and should not be enclosed in quotes"),
    ("SELECT Id FROM Profile WHERE Name = 5", "INVALID_QUERY_FILTER_OPERATOR",
     "must be of type string and should be enclosed in quotes"),
    ("SELECT Id FROM Profile WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: nope"),
])
def test_refused_queries_carry_salesforce_codes_and_position(query, code, fragment):
    with pytest.raises(SoqlError) as caught:
        compile_query(query)
    assert caught.value.code == code
    assert fragment in caught.value.message
    assert "ERROR at Row:1:Column:" in caught.value.message


def test_parse_keeps_the_structure():
    tree = parse("SELECT Id, Parent.Name FROM SetupEntityAccess WHERE ParentId IN ('a') "
                 "ORDER BY Id DESC LIMIT 5")
    assert [p.text for p in tree.fields] == ["Id", "Parent.Name"]
    assert tree.sobject == "SetupEntityAccess" and tree.limit == 5 and tree.order_by[0].descending


def test_ids_have_salesforce_checksums():
    assert ids.to_18("001D000000IqhSL") == "001D000000IqhSLIAZ"  # the REST guide's example id
    assert ids.normalize("001d000000iqhsliaz") == "001D000000IqhSLIAZ"
    assert ids.normalize("001D000000IqhSL") == "001D000000IqhSLIAZ"
    assert ids.normalize("not an id") is None
    assert ids.make_id("ConnectedApplication", 1).startswith("0H4")


def _like_as_regex(pattern: str) -> re.Pattern[str]:
    """What LIKE means, written as the backtracking regular expression the matcher replaced."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append({"%": ".*", "_": "."}.get(pattern[i], re.escape(pattern[i])))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def like_names(pattern: str, values: list[str]) -> list[str]:
    rows = [{"Id": ids.make_id("Profile", n + 1), "Name": value} for n, value in enumerate(values)]
    escaped = pattern.replace("\\", "\\\\").replace("'", "\\'")
    plan = compile_query(f"SELECT Name FROM Profile WHERE Name LIKE '{escaped}'")
    return [record["Name"] for record in plan.run(lambda name: rows, version="62.0")["records"]]


def test_like_with_twelve_percent_signs_answers_in_milliseconds():
    usernames = ["admin@local.devhub", "dev@local.devhub", "ci@local.devhub", "readonly@local.devhub"]
    started = time.monotonic()
    assert like_names("%" * 12 + "x", usernames) == []
    assert like_names("%a" * 12 + "%", ["a" * 40, "a" * 11]) == ["a" * 40]
    assert time.monotonic() - started < 0.5  # the backtracking regex took 19 s on these usernames


def test_like_matches_what_the_regular_expression_matched():
    chooser = random.Random(17)
    for _ in range(3000):
        value = "".join(chooser.choices("abA_%", k=chooser.randint(0, 7)))
        pattern = "".join(chooser.choices(["a", "B", "b", "%", "_", "\\%", "\\_", "\\"], k=chooser.randint(0, 6)))
        expected = [value] if _like_as_regex(pattern).fullmatch(value) else []
        assert like_names(pattern, [value]) == expected, (pattern, value)


def test_like_ignores_case_and_keeps_one_character_per_underscore():
    assert like_names("STRA_E", ["straße", "strasse"]) == ["straße"]
    assert like_names("%ci\\_log%", ["CI_Login", "CIxLogin"]) == ["CI_Login"]


def test_query_over_its_time_limit_answers_query_timeout():
    with pytest.raises(SoqlError) as caught:
        compile_query("SELECT Name FROM Profile WHERE Name LIKE '%a%'").run(
            lambda name: ROWS.get(name, []), version="62.0", time_limit=0.0)
    assert caught.value.code == "QUERY_TIMEOUT"
    assert caught.value.message == "Your query request was running for too long."
