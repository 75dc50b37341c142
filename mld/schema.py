"""JSON-schema problems in words: the one formatter of the workflow config, the experiments table
and the run config.

jsonschema's own messages name the schema ("Additional properties are not allowed", "'0' is not
of type 'array'"); these name the user's side: the dotted key, the value given, what the key
accepts and the fix, one line per problem:

    train.lr = -1: expected a number > 0.0, or remove the key to use the default 0.0002
    train.epochz: unknown key; the keys allowed here are ... (check the spelling or remove it)
    model.head: missing; add it (a non-empty string)
    datasets.coco: matches none of the allowed forms (synthetic_dataset, ...); closest: ...

A problem inside a section (a mapping of known keys) or a named entry is reported at its key; a
problem inside a value (a list of numbers, a free-form mapping) at the value's key. Only local
`$ref`s (`#/$defs/...`) are followed. Imports jsonschema only when validating, and nothing of mld.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import yaml

# jsonschema keywords that reject keys of a mapping its schema does not name.
UNKNOWN_KEY_KEYWORDS = ("additionalProperties", "unevaluatedProperties")


def show(value: Any) -> str:
    """A value as the user would write it in YAML, on one line."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip().removesuffix("\n...")


def is_section(spec: Mapping[str, Any]) -> bool:
    """A section: a mapping of known keys (a free-form mapping is one value, checked by its consumer)."""
    return spec.get("type") == "object" and spec.get("additionalProperties") is False


def resolve(spec: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` with its local `$ref` and `allOf` parts merged in (its own keywords win)."""
    merged: dict[str, Any] = {}
    if "$ref" in spec:
        target: Any = root
        for part in spec["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        merged.update(resolve(target, root))
    for part in spec.get("allOf", []):
        merged.update(resolve(part, root))
    properties = {**merged.get("properties", {}), **spec.get("properties", {})}
    merged.update({key: value for key, value in spec.items() if key not in ("$ref", "allOf")})
    if properties:
        merged["properties"] = properties
    return merged


def expected(spec: Mapping[str, Any], root: Mapping[str, Any]) -> str | None:
    """What a key's schema accepts, in words ("an integer >= 1", "one of adam, adamw", ...); None
    where it cannot say it in a few words (alternatives, patterns of several kinds)."""
    spec = resolve(spec, root)
    types = spec.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    null = " or null" if "null" in types else ""
    kinds = [kind for kind in types if kind != "null"]
    if "enum" in spec:
        return "one of " + ", ".join(map(str, spec["enum"])) + null
    if "const" in spec:
        return show(spec["const"])
    kind = kinds[0] if kinds else None  # a second kind is worded for booleans only (e.g. true or a string)
    if kind == "object":
        if is_section(spec):
            return f"a mapping of keys ({', '.join(spec.get('properties', {}))})" + null
        if not spec.get("required"):
            return "a mapping (key: value pairs)" + null
        example = f" (e.g. {show(spec['examples'][0])})" if spec.get("examples") else ""
        return "a mapping with " + ", ".join(f"a '{key}'" for key in spec["required"]) + example + null
    if kind == "string":
        text = "a non-empty string" if spec.get("minLength") else "a string"
        return text + (f" matching {spec['pattern']}" if "pattern" in spec else "") + null
    if kind == "boolean":
        return "true or false" + ("" if len(kinds) == 1 else f" or a {kinds[1]}") + null
    if kind == "array":
        return _expected_list(spec, root) + null
    if kind in ("integer", "number"):
        bounds = [f"{sign} {spec[keyword]}" for keyword, sign in (("exclusiveMinimum", ">"), ("minimum", ">="),
                                                                   ("exclusiveMaximum", "<"), ("maximum", "<="))
                  if keyword in spec]
        noun = "an integer" if kind == "integer" else "a number"
        return noun + (" " + " and ".join(bounds) if bounds else "") + null
    return None


def _expected_list(spec: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    """"a list of 2 numbers, each > 0.0 and <= 1.0", "a non-empty list of integers, each >= 0", ..."""
    item = expected(spec["items"], root) if isinstance(spec.get("items"), Mapping) else None
    low, high = spec.get("minItems", 0), spec.get("maxItems")
    count = f"{low} " if low == high else ""
    start = "a list of " if count or not low else ("a non-empty list of " if low == 1 else f"a list of >= {low} ")
    for singular, plural in (("a number", "numbers"), ("an integer", "integers")):
        if item and item.startswith(singular):
            rest = item.removeprefix(singular).strip()
            return start + count + plural + (f", each {rest}" if rest else "")
    return start + count + "values" + (f", each {item}" if item else "")


def _closed(spec: Mapping[str, Any]) -> bool:
    """A mapping of known keys: a section, or an entry whose unnamed keys are refused."""
    return spec.get("additionalProperties") is False or spec.get("unevaluatedProperties") is False


def _walkable(spec: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    """Whether a problem inside a value of this schema is reported at its inner key: mappings of
    known keys, mappings of named entries and lists of mappings; not lists of scalars, not
    free-form mappings (one value each, as its consumer reads it)."""
    if _closed(spec) or isinstance(spec.get("additionalProperties"), Mapping):
        return True
    items = spec.get("items")
    return isinstance(items, Mapping) and "properties" in resolve(items, root)


def _child(spec: Mapping[str, Any], part: Any, root: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema of `part` inside a value of schema `spec` (None: not described there)."""
    if isinstance(part, int):
        items = spec.get("items")
        return resolve(items, root) if isinstance(items, Mapping) else None
    if part in spec.get("properties", {}):
        return resolve(spec["properties"][part], root)
    extra = spec.get("additionalProperties")
    return resolve(extra, root) if isinstance(extra, Mapping) else None


# The keywords whose failure `expected` words fully; any other is said in jsonschema's words.
WORDED_KEYWORDS = ("type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                   "minLength", "pattern", "minItems", "maxItems", "required", *UNKNOWN_KEY_KEYWORDS)


def _lines(error: Any, spec: Mapping[str, Any], root: Mapping[str, Any], base: Sequence[Any],
           instance: Any) -> list[str]:
    """One error as lines. `spec` and `instance` are the schema and the value at `base`, the key
    path where the error's relative path starts (the document's top, or a oneOf's value)."""
    path, depth, spec = list(error.relative_path), 0, resolve(spec, root)
    # Walk down to the key at fault: the first whose value is not looked into.
    while depth < len(path) and _walkable(spec, root):
        inner = _child(spec, path[depth], root)
        if inner is None:
            break
        spec, instance, depth = inner, instance[path[depth]], depth + 1
    key = ".".join(str(part) for part in [*base, *path[:depth]])
    at_fault = depth == len(path)  # the error is about this value itself, not about one inside it
    if at_fault and error.validator in UNKNOWN_KEY_KEYWORDS and _closed(spec):
        allowed = list(spec.get("properties", {}))
        return [f"{key}.{name}".lstrip(".") + f": unknown key; the keys allowed here are {', '.join(allowed)} "
                "(check the spelling or remove it)" for name in instance if name not in allowed]
    if at_fault and error.validator == "required" and _closed(spec):
        lines = []
        for name in error.validator_value:
            if name not in instance:
                words = expected(spec["properties"].get(name, {}), root)
                lines.append(f"{key}.{name}".lstrip(".") + ": missing; add it" + (f" ({words})" if words else ""))
        return lines
    name = key or "<top level>"
    if at_fault and error.validator in ("oneOf", "anyOf"):
        forms = [branch["$ref"].rsplit("/", 1)[-1] if "$ref" in branch else expected(branch, root) or "?"
                 for branch in error.validator_value]
        detail = f"{name}: matches none of the allowed forms ({', '.join(forms)})"
        if error.context:  # the form that matched deepest (of the value's type) is the one the user meant
            closest = max(error.context, key=lambda sub: (len(sub.relative_path), sub.validator != "type"))
            branch = error.validator_value[closest.relative_schema_path[0]]
            detail += "; closest: " + "; ".join(_lines(closest, branch, root, [*base, *path], instance))
        return [detail]
    words = expected(spec, root) if error.validator in WORDED_KEYWORDS else None
    if words is None:
        return [f"{name} = {show(instance)}: {error.message}"]
    hint = f", or remove the key to use the default {show(spec['default'])}" if "default" in spec else ""
    return [f"{name} = {show(instance)}: expected {words}{hint}"]


def schema_problems(document: Any, schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every way `document` breaks `schema` (a JSON schema, draft 2020-12), one line each, in key
    order, each starting with `prefix` (e.g. "config key "); a value's problems once."""
    import jsonschema  # only needed here; keeps importing the config modules cheap

    validator = jsonschema.Draft202012Validator(schema)
    problems: list[str] = []
    for error in sorted(validator.iter_errors(document), key=lambda e: [str(part) for part in e.absolute_path]):
        problems += [line for line in _lines(error, schema, schema, [], document) if line not in problems]
    return [prefix + line for line in problems]
