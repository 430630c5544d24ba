#!/usr/bin/env python3
"""Renders and lints charts/serin with helm-python-sdk (Helm v4's Go SDK, no helm binary).

Reads {"chart", "release", "namespace", "cases": {name: values}} as JSON on stdin and prints
{"sdk", "renders": {name: {template: manifest}}, "lint": {name: report}} as JSON; parsing and
comparing the manifests is left to tests/packaging.rs. Exits 3 when the SDK is missing.
"""
import json
import sys

try:
    import helm_python as helm
except ImportError:
    print(
        "helm-python-sdk is not installed: pip install helm-python-sdk==0.2.2",
        file=sys.stderr,
    )
    sys.exit(3)


def main() -> None:
    req = json.load(sys.stdin)
    chart = helm.Chart.load(req["chart"])
    out = {"sdk": helm.helm_sdk_version(), "renders": {}, "lint": {}}
    for name, values in req["cases"].items():
        out["renders"][name] = chart.render(
            values, name=req["release"], namespace=req["namespace"], is_install=True
        )
        out["lint"][name] = helm.lint(
            req["chart"], values, strict=True, namespace=req["namespace"]
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
