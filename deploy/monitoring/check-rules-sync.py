#!/usr/bin/env python3
"""Check that prometheusrule.yaml's `spec.groups` equals switchyard-rules.yaml's `groups`.

The alert rules live twice: as a plain Prometheus rules file (for `rule_files:`
and `promtool`) and as a Prometheus Operator `PrometheusRule`. This compares
the two after YAML parsing, so indentation, quoting and comments may differ but
every group, rule, expression, `for`, label and annotation must be the same.

Usage: python3 check-rules-sync.py [RULES_FILE PROMETHEUSRULE_FILE]
(defaults: the two files next to this script)

Exit status: 0 in sync, 1 the groups differ, 2 a file is unreadable or not
the expected shape, or PyYAML is unavailable.
"""

import difflib
import importlib
import json
import os
import site
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message):
    """Report a problem that is not a difference between the files: exit 2."""
    print(f"check-rules-sync: {message}", file=sys.stderr)
    sys.exit(2)


def load_yaml_module():
    """Import PyYAML; if it is missing, try `pip install --user pyyaml` once."""
    try:
        return importlib.import_module("yaml")
    except ImportError:
        pass
    # pip refuses --user inside a virtualenv; there the venv itself is the target.
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet"]
    cmd += ["pyyaml"] if in_venv else ["--user", "pyyaml"]
    print(f"check-rules-sync: PyYAML not found, running: {' '.join(cmd)}", file=sys.stderr)
    try:
        subprocess.run(cmd, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        fail("PyYAML is required and could not be installed "
                 f"({err}). Install it with `pip install pyyaml` or your distribution's "
                 "package (Debian: python3-yaml) and run again.")
    # A fresh --user install is not on sys.path of this already-running interpreter.
    user_site = site.getusersitepackages()
    if user_site not in sys.path:
        sys.path.append(user_site)
    importlib.invalidate_caches()
    try:
        return importlib.import_module("yaml")
    except ImportError:
        fail("installed PyYAML but still cannot import it; "
                 "run again, or install it with `pip install pyyaml`.")


def load(yaml, path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as err:
        fail(f"cannot read {path}: {err}")
    except yaml.YAMLError as err:
        fail(f"{path} is not valid YAML: {err}")


def groups_of_rules_file(doc, path):
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        fail(f"{path}: expected a top-level `groups:` list")
    return doc["groups"]


def groups_of_prometheusrule(doc, path):
    if not isinstance(doc, dict) or doc.get("kind") != "PrometheusRule":
        fail(f"{path}: expected `kind: PrometheusRule`")
    if not str(doc.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
        fail(f"{path}: expected apiVersion monitoring.coreos.com/v1")
    spec = doc.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("groups"), list):
        fail(f"{path}: expected a `spec.groups` list")
    return spec["groups"]


def canonical(groups):
    """Stable text for a diff: keys sorted, one value per line."""
    return json.dumps(groups, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def main(argv):
    if len(argv) not in (1, 3):
        print(__doc__, file=sys.stderr)
        return 2
    rules_path = argv[1] if len(argv) == 3 else os.path.join(HERE, "switchyard-rules.yaml")
    crd_path = argv[2] if len(argv) == 3 else os.path.join(HERE, "prometheusrule.yaml")

    yaml = load_yaml_module()
    plain = groups_of_rules_file(load(yaml, rules_path), rules_path)
    crd = groups_of_prometheusrule(load(yaml, crd_path), crd_path)

    if plain == crd:
        rules = sum(len(g.get("rules") or []) for g in plain if isinstance(g, dict))
        print(f"check-rules-sync: OK: {len(plain)} group(s), {rules} rule(s) identical in "
              f"{os.path.relpath(rules_path)} and {os.path.relpath(crd_path)} (spec.groups)")
        return 0

    diff = difflib.unified_diff(canonical(plain), canonical(crd),
                                fromfile=f"{rules_path}: groups",
                                tofile=f"{crd_path}: spec.groups", lineterm="")
    print("check-rules-sync: the rule groups differ:", file=sys.stderr)
    for line in diff:
        print(line, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
