"""mld.schema: one wording of JSON-schema problems for every config (workflow, experiments table,
run config), checked here on a small schema of each shape they use."""
from __future__ import annotations

import pytest

from mld.schema import schema_problems

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "$defs": {
        "positive_int": {"type": "integer", "minimum": 1},
        "entry": {
            "type": "object",
            "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}, "size": {"$ref": "#/$defs/positive_int"}},
            "required": ["name"],
            "unevaluatedProperties": False,
        },
    },
    "properties": {
        "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.1},
        "crop": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 2, "maxItems": 2},
        "entries": {"type": "array", "items": {"$ref": "#/$defs/entry"}},
        "roles": {"type": "object", "additionalProperties": {"oneOf": [
            {"type": "string"},
            {"type": "object", "additionalProperties": False, "required": ["model"],
             "properties": {"model": {"type": "string"}, "layers": {"$ref": "#/$defs/positive_int"}}}]}},
        "options": {"type": "object"},
    },
}


@pytest.mark.parametrize("document, lines", [
    ({"lr": 0}, ["lr = 0: expected a number > 0, or remove the key to use the default 0.1"]),
    ({"lr": 1, "lrr": 1}, ["lrr: unknown key; the keys allowed here are lr, crop, entries, roles, options "
                           "(check the spelling or remove it)"]),
    ({"crop": [-1, 2, 3]}, ["crop = [-1, 2, 3]: expected a list of 2 numbers, each >= 0"]),
    ({"entries": [{"name": "a"}, {"size": 0}]}, ["entries.1.name: missing; add it (a string matching ^[a-z]+$)",
                                                 "entries.1.size = 0: expected an integer >= 1"]),
    ({"entries": [{"name": "a", "sise": 2}]}, ["entries.0.sise: unknown key; the keys allowed here are name, size "
                                               "(check the spelling or remove it)"]),
    ({"roles": {"big": {"model": "m", "layers": 0}}},
     ["roles.big: matches none of the allowed forms (a string, a mapping of keys (model, layers)); closest: "
      "roles.big.layers = 0: expected an integer >= 1"]),
    ({"options": [1]}, ["options = [1]: expected a mapping (key: value pairs)"]),
    ({"entries": [{"name": "a"}], "crop": "wide"}, ["crop = wide: expected a list of 2 numbers, each >= 0"]),
])
def test_each_problem_is_one_line_naming_the_key_the_value_and_what_is_accepted(document, lines) -> None:
    assert schema_problems(document, SCHEMA) == lines
    assert schema_problems(document, SCHEMA, prefix="config key ") == ["config key " + line for line in lines]


def test_a_valid_document_has_no_problems() -> None:
    assert schema_problems({"lr": 0.5, "crop": [0, 1], "entries": [{"name": "a", "size": 3}],
                            "roles": {"small": "big", "big": {"model": "m"}}, "options": {"any": 1}}, SCHEMA) == []
