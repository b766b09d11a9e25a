"""Validate JSON values against the definitions of an OpenAPI 2.0 (Swagger)
file, the way the official Azure REST specs use it.

Only the parts of the format that the vendored specs (spec/) use are
implemented: $ref (inside one file or to a sibling file by its base name),
allOf, discriminator + x-ms-discriminator-value, type, format int32/int64,
enum, required, properties, additionalProperties, items, minLength,
maxLength, pattern, minimum, maximum, maxItems, minItems, readOnly.

Two modes:
  request   read-only properties are accepted and ignored (ARM resource
            providers drop them), and properties the schema does not define
            become warnings, not errors (ARM ignores unknown properties).
  response  properties the schema does not define are errors: the simulator
            must never send a field the spec does not define.

A problem is a dict {"path", "code", "message"}; "path" is a JSON path in
the Newtonsoft style the .NET services use ("properties.details.x[0]").
"""

import json
import os
import re

SPEC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spec")

# Base names that $refs in the specs point at, mapped to the vendored copies.
# Refs to files not listed here (managedidentity.json, v2/types.json) resolve
# to an empty schema, which accepts anything.
_FILES = {
    "databox.json": "databox-2025-07-01.json",
    "types.json": "common-types-v3-types.json",
    "storageimportexport.json": "storageimportexport-2020-08-01.json",
    "storageimportexport-2021-01-01.json": "storageimportexport-2021-01-01.json",
}

_INT_RANGES = {
    "int32": (-2 ** 31, 2 ** 31 - 1),
    "int64": (-2 ** 63, 2 ** 63 - 1),
}


def _problem(path, code, message):
    return {"path": path, "code": code, "message": message}


def _join(path, key):
    if isinstance(key, int):
        return "%s[%d]" % (path, key)
    if re.match(r"^[A-Za-z_$][\w$]*$", key):
        return key if not path else path + "." + key
    return "%s['%s']" % (path, key)


class Spec:
    """One spec file plus the sibling files its $refs need."""

    def __init__(self, name):
        self.docs = {}
        self.main = self._load(name)

    def _load(self, name):
        name = _FILES.get(name, name)
        if name not in self.docs:
            with open(os.path.join(SPEC_DIR, name), encoding="utf-8") as f:
                self.docs[name] = json.load(f)
        return name

    def definition(self, name, doc=None):
        return self.docs[doc or self.main]["definitions"][name]

    def resolve(self, ref, doc):
        """Return (schema, doc) for a $ref seen in doc."""
        filepart, _, pointer = ref.partition("#")
        if filepart:
            base = os.path.basename(filepart)
            if base not in _FILES or (base == "types.json"
                and "/v3/" not in filepart):
                return {}, doc
            doc = self._load(base)
        node = self.docs[doc]
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, doc

    # -- schema flattening ------------------------------------------------

    def _deref(self, schema, doc):
        while "$ref" in schema:
            schema, doc = self.resolve(schema["$ref"], doc)
        return schema, doc

    def flatten(self, schema, doc):
        """Merge a schema with its allOf parents.  Returns a dict with
        properties (name -> (schema, doc)), required (set), discriminator,
        additionalProperties, type and the other keywords of the leaf."""
        schema, doc = self._deref(schema, doc)
        out = {"properties": {}, "required": set(), "discriminator": None,
            "leaf": schema, "doc": doc}
        for parent in schema.get("allOf", []):
            sub = self.flatten(parent, doc)
            out["properties"].update(sub["properties"])
            out["required"] |= sub["required"]
            out["discriminator"] = out["discriminator"] or \
                sub["discriminator"]
            if sub["discriminator"] and "base" not in out:
                out["base"] = sub.get("base", sub["leaf"])
        for key, sub in schema.get("properties", {}).items():
            out["properties"][key] = (sub, doc)
        out["required"] |= set(schema.get("required", []))
        if schema.get("discriminator"):
            out["discriminator"] = schema["discriminator"]
            out["base"] = schema
        return out

    def subtype(self, base, value, doc):
        """Find the definition whose allOf chain reaches base and whose
        discriminator value is value."""
        defs = self.docs[doc]["definitions"]
        for name, schema in defs.items():
            tag = schema.get("x-ms-discriminator-value", name)
            if tag != value or schema is base:
                continue
            if self._inherits(schema, base, doc, 0):
                return schema
        return None

    def _inherits(self, schema, base, doc, depth):
        if depth > 8:
            return False
        for parent in schema.get("allOf", []):
            p, pdoc = self._deref(parent, doc)
            if p is base or self._inherits(p, base, pdoc, depth + 1):
                return True
        return False

    # -- validation -------------------------------------------------------

    def validate(self, schema, value, mode="request", path=""):
        """Validate value.  schema is a definition name (str) or a schema
        dict of the main file.  Returns (errors, warnings)."""
        if isinstance(schema, str):
            schema = {"$ref": "#/definitions/" + schema}
        errors, warnings = [], []
        self._check(schema, self.main, value, mode, path, errors, warnings,
            dispatch=True)
        return errors, warnings

    def _check(self, schema, doc, value, mode, path, errors, warnings,
        dispatch):
        flat = self.flatten(schema, doc)
        leaf, doc = flat["leaf"], flat["doc"]
        disc = flat["discriminator"]
        if disc and dispatch and isinstance(value, dict):
            tag = value.get(disc)
            if tag is None:
                errors.append(_problem(_join(path, disc),
                    "MissingRequiredProperty",
                    "Required property '%s' not found in JSON. Path '%s'."
                    % (disc, path)))
                return
            sub = self.subtype(flat["base"], tag, doc) \
                if isinstance(tag, str) else None
            if sub is None:
                base_tag = flat["base"].get("x-ms-discriminator-value")
                if tag != base_tag:
                    errors.append(_problem(_join(path, disc),
                        "InvalidDiscriminatorValue",
                        "The value '%s' is not a valid '%s'. Path '%s'."
                        % (tag, disc, _join(path, disc))))
                    return
            else:
                self._check(sub, doc, value, mode, path, errors, warnings,
                    dispatch=False)
                return
        self._check_value(flat, leaf, doc, value, mode, path, errors,
            warnings)

    def _type_of(self, flat, leaf):
        t = leaf.get("type")
        if t is None and (flat["properties"] or "additionalProperties"
            in leaf):
            t = "object"
        return t

    def _check_value(self, flat, leaf, doc, value, mode, path, errors,
        warnings):
        t = self._type_of(flat, leaf)
        if value is None:
            if t is not None and not leaf.get("x-nullable"):
                errors.append(_problem(path, "InvalidType",
                    "Null is not a valid '%s'. Path '%s'." % (t, path)))
            return
        if t and not _type_ok(t, value):
            errors.append(_problem(path, "InvalidType",
                "Invalid type. Expected %s but got %s. Path '%s'."
                % (t, _json_type(value), path)))
            return
        if "enum" in leaf and value not in leaf["enum"]:
            errors.append(_problem(path, "InvalidEnumValue",
                "The value '%s' is not valid. Allowed values: %s. Path '%s'."
                % (value, ", ".join(map(str, leaf["enum"])), path)))
            return
        if t == "string":
            self._check_string(leaf, value, path, errors)
        elif t in ("integer", "number"):
            self._check_number(leaf, value, path, errors)
        elif t == "array":
            self._check_array(leaf, doc, value, mode, path, errors, warnings)
        elif t == "object":
            self._check_object(flat, leaf, doc, value, mode, path, errors,
                warnings)

    def _readonly(self, sub):
        schema, doc = sub
        return bool(schema.get("readOnly")
            or self._deref(schema, doc)[0].get("readOnly"))

    def _check_string(self, leaf, value, path, errors):
        if "minLength" in leaf and len(value) < leaf["minLength"]:
            errors.append(_problem(path, "InvalidLength",
                "String '%s' is shorter than %d characters. Path '%s'."
                % (value, leaf["minLength"], path)))
        if "maxLength" in leaf and len(value) > leaf["maxLength"]:
            errors.append(_problem(path, "InvalidLength",
                "String '%s' is longer than %d characters. Path '%s'."
                % (value, leaf["maxLength"], path)))
        if "pattern" in leaf and not re.search(leaf["pattern"], value):
            errors.append(_problem(path, "InvalidPattern",
                "String '%s' does not match pattern '%s'. Path '%s'."
                % (value, leaf["pattern"], path)))

    def _check_number(self, leaf, value, path, errors):
        lo, hi = _INT_RANGES.get(leaf.get("format"), (None, None))
        lo = leaf.get("minimum", lo)
        hi = leaf.get("maximum", hi)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            errors.append(_problem(path, "InvalidValue",
                "Value %s is outside the allowed range. Path '%s'."
                % (value, path)))

    def _check_array(self, leaf, doc, value, mode, path, errors, warnings):
        if "maxItems" in leaf and len(value) > leaf["maxItems"]:
            errors.append(_problem(path, "TooManyItems",
                "Array has more than %d items. Path '%s'."
                % (leaf["maxItems"], path)))
        if "minItems" in leaf and len(value) < leaf["minItems"]:
            errors.append(_problem(path, "TooFewItems",
                "Array has fewer than %d items. Path '%s'."
                % (leaf["minItems"], path)))
        items = leaf.get("items")
        if items is None:
            return
        for i, item in enumerate(value):
            self._check(items, doc, item, mode, _join(path, i), errors,
                warnings, dispatch=True)

    def _check_object(self, flat, leaf, doc, value, mode, path, errors,
        warnings):
        props = flat["properties"]
        for name in sorted(flat["required"]):
            sub = props.get(name)
            ro = sub is not None and self._readonly(sub)
            secret = sub is not None and bool(sub[0].get("x-ms-secret"))
            if name in value or (mode == "request" and ro) or \
                (mode == "response" and secret):
                continue
            errors.append(_problem(_join(path, name),
                "MissingRequiredProperty",
                "Required property '%s' not found in JSON. Path '%s'."
                % (name, path)))
        extra = leaf.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key)
            if sub is not None:
                if mode == "request" and self._readonly(sub):
                    warnings.append(_problem(_join(path, key),
                        "ReadOnlyPropertyIgnored",
                        "Property '%s' is read-only and was ignored."
                        % key))
                    continue
                self._check(sub[0], sub[1], item, mode, _join(path, key),
                    errors, warnings, dispatch=True)
            elif isinstance(extra, dict):
                self._check(extra, doc, item, mode, _join(path, key),
                    errors, warnings, dispatch=True)
            elif extra is True or not props:
                continue
            elif flat["discriminator"] == key:
                continue
            else:
                p = _problem(_join(path, key), "UnknownProperty",
                    "Property '%s' is not defined by the spec." % key)
                (errors if mode == "response" else warnings).append(p)


def _json_type(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_ok(t, value):
    actual = _json_type(value)
    if t == "number":
        return actual in ("integer", "number")
    if t == "file":
        return True
    return actual == t


_SPECS = {}


def spec(name):
    """Shared, lazily loaded Spec for databox.json or
    storageimportexport.json."""
    if name not in _SPECS:
        _SPECS[name] = Spec(name)
    return _SPECS[name]


def databox():
    return spec("databox.json")


def importexport(api_version=None):
    """The ImportExport spec of api_version: the 2021-01-01 preview for that
    version, else the stable 2020-08-01 (2016-11-01 requests are a subset
    of it for what the simulator models)."""
    if api_version == "2021-01-01":
        return spec("storageimportexport-2021-01-01.json")
    return spec("storageimportexport.json")
