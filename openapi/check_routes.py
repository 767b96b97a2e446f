#!/usr/bin/python3
"""Check that every route the server serves is described in the OpenAPI document.

    /usr/bin/python3 openapi/check_routes.py openapi/openapi.yaml ROUTES.txt [--both]

ROUTES.txt has one route a line, `METHOD /path/{param}` (blank lines and lines
starting with `#` are skipped). A route is in the spec when `paths` has its path
with an operation for its method; HEAD must be documented as its own `head`
operation. Path parameters match by position, not by name: `/v1/objects/{id}`
and `/v1/objects/{ref}` are the same route. Methods are case-insensitive.

Exits 1 listing every route missing from the spec, 0 if none is missing, 2 on a
usage or input error. With `--both`, operations in the spec that are missing from
ROUTES.txt are listed too and also make it exit 1.
Needs only the standard library and PyYAML (Debian: python3-yaml).
"""

import re
import sys

import yaml

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{[^{}/]+\}")


def normalize(path):
    """The path with every `{name}` replaced by `{}`, without a trailing slash."""
    path = _PARAM.sub("{}", path)
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def spec_routes(spec_path):
    """{(METHOD, normalized path): path as written in the spec}."""
    with open(spec_path, "r", encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    paths = spec.get("paths") if isinstance(spec, dict) else None
    if not isinstance(paths, dict):
        raise ValueError("%s: no `paths` object" % spec_path)
    routes = {}
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        for method in METHODS:
            if method in item:
                routes[(method.upper(), normalize(str(path)))] = "%s %s" % (
                    method.upper(),
                    path,
                )
    return routes


def server_routes(routes_path):
    """{(METHOD, normalized path): line as written} from ROUTES.txt."""
    routes = {}
    with open(routes_path, "r", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if (
                len(fields) != 2
                or fields[0].lower() not in METHODS
                or not fields[1].startswith("/")
            ):
                raise ValueError(
                    "%s:%d: expected `METHOD /path`, got %r" % (routes_path, number, text)
                )
            method, path = fields[0].upper(), fields[1]
            routes.setdefault((method, normalize(path)), "%s %s" % (method, path))
    return routes


def main(argv):
    args = [a for a in argv[1:] if a != "--both"]
    both = len(args) != len(argv) - 1
    if len(args) != 2:
        sys.stderr.write("usage: %s SPEC.yaml ROUTES.txt [--both]\n" % argv[0])
        return 2
    try:
        documented = spec_routes(args[0])
        served = server_routes(args[1])
    except (OSError, ValueError, yaml.YAMLError) as e:
        sys.stderr.write("check_routes: %s\n" % e)
        return 2

    missing = [served[k] for k in served if k not in documented]
    extra = [documented[k] for k in documented if k not in served] if both else []
    if missing:
        print("routes missing from %s:" % args[0])
        for route in missing:
            print("  " + route)
    if extra:
        print("operations in %s that %s does not list:" % (args[0], args[1]))
        for route in extra:
            print("  " + route)
    if missing or extra:
        return 1
    print(
        "check_routes: all %d routes are in %s" % (len(served), args[0])
        + (", and all %d operations are routes" % len(documented) if both else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
