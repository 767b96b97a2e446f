#!/usr/bin/python3
"""Embed the OpenAPI document in the rayd binary.

    /usr/bin/python3 openapi/embed.py openapi/openapi.yaml OUT.c

writes OUT.c (and nothing else), a C file defining

    const char rayd_openapi_yaml[];            the YAML file, byte for byte, NUL-terminated
    const unsigned long rayd_openapi_yaml_len; its length, without the NUL
    const char rayd_openapi_json[];            the same document as compact JSON
    const unsigned long rayd_openapi_json_len; its length, without the NUL

The YAML is read with YAML 1.2 core-schema rules, as OpenAPI 3.1 expects, not
PyYAML's YAML 1.1 defaults: `yes`/`no`/`on`/`off` stay strings, dates stay
strings, `010` is 10, and mapping keys are always strings (response code `200`
becomes "200"). Duplicate keys, anchors to non-JSON values, NaN and infinities are
errors. Needs only the standard library and PyYAML (Debian: python3-yaml).
"""

import json
import math
import os
import re
import sys
import tempfile

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types and string keys."""


# Replace PyYAML's YAML 1.1 implicit resolvers (bool yes/no/on/off, timestamps,
# sexagesimal and octal ints, ...) with the YAML 1.2 core schema's.
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"]
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null",
    re.compile(r"^(?:~|null|Null|NULL|)$"),
    ["~", "n", "N", ""],
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader, node):
    text = loader.construct_scalar(node).lower()
    value = float(text.replace(".inf", "inf").replace(".nan", "nan"))
    if math.isnan(value) or math.isinf(value):
        raise yaml.constructor.ConstructorError(
            None, None, "NaN and infinities have no JSON form", node.start_mark
        )
    return value


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)  # merge keys (<<)
    result = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark
            )
        key = key_node.value  # the key's text, whatever it looks like: "200" stays "200"
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % key, key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
# Explicit !!timestamp, !!binary, !!set and the like have no JSON form: make them errors.
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    del _Loader.yaml_constructors["tag:yaml.org,2002:" + _tag]


def load_spec(text):
    """Parse the spec's YAML text into plain JSON-compatible Python values."""
    return yaml.load(text, Loader=_Loader)


def c_array(name, data):
    """A C definition of a NUL-terminated char array holding data, and its length."""
    out = ["const char %s[%d] = {\n" % (name, len(data) + 1)]
    line = "   "
    for byte in data + b"\0":
        if byte == 0x27 or byte == 0x5C:  # ' and backslash
            item = "'\\%c'," % byte
        elif 0x20 <= byte < 0x7F:
            item = "'%c'," % byte
        else:
            item = "'\\x%02x'," % byte
        if len(line) + 1 + len(item) > 96:
            out.append(line + "\n")
            line = "   "
        line += " " + item
    out.append(line + "\n};\n")
    out.append("const unsigned long %s_len = %dUL;\n" % (name, len(data)))
    return "".join(out)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s SPEC.yaml OUT.c\n" % argv[0])
        return 2
    spec_path, out_path = argv[1], argv[2]
    try:
        with open(spec_path, "rb") as f:
            yaml_bytes = f.read()
    except OSError as e:
        sys.stderr.write("%s: %s\n" % (spec_path, e.strerror))
        return 1
    try:
        if b"\0" in yaml_bytes:
            raise ValueError("the file contains a NUL byte")
        text = yaml_bytes.decode("utf-8")
        spec = load_spec(text)
        if not isinstance(spec, dict) or not isinstance(spec.get("openapi"), str):
            raise ValueError("not an OpenAPI document (no string `openapi` field)")
        json_text = json.dumps(
            spec, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (ValueError, yaml.YAMLError) as e:
        sys.stderr.write("%s: %s\n" % (spec_path, e))
        return 1
    json_bytes = json_text.encode("utf-8")

    source = (
        "/* The OpenAPI document, embedded: generated by openapi/embed.py from %s.\n"
        " * Do not edit; edit the YAML and rebuild. */\n\n"
        % os.path.basename(spec_path)
        + c_array("rayd_openapi_yaml", yaml_bytes)
        + "\n"
        + c_array("rayd_openapi_json", json_bytes)
    )
    # Write beside the target and rename, so a failed run leaves no half file.
    out_dir = os.path.dirname(os.path.abspath(out_path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".embed-", suffix=".c.tmp", dir=out_dir)
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
            f.write(source)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            sys.stderr.write("%s: %s\n" % (out_path, e.strerror))
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
